"""trustlab: trustworthy-ML experiments - audit, mitigate, attack and defend models."""

__version__ = "0.1.0"


def audit(*args, **kwargs):
    """See :func:`trustlab.metrics.audit`."""
    from trustlab.metrics import audit as _audit

    return _audit(*args, **kwargs)


def load_dataset(*args, **kwargs):
    """See :func:`trustlab.data.load_dataset`."""
    from trustlab.data import load_dataset as _load

    return _load(*args, **kwargs)


__all__ = ["__version__", "audit", "load_dataset"]
