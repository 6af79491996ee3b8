"""Hyper-parameters of every deep training method, with their defaults, in one place
(after DomainBed's ``hparams_registry``).

``OPTIMIZER`` applies to all methods (``weight_decay`` is the S5 L2 knob); ``HPARAMS[name]``
holds what only that method reads. ``CHOICES`` lists the allowed values of the string ones.
"""

from __future__ import annotations

from typing import Any

from trustlab.errors import TrustlabError

OPTIMIZER: dict[str, Any] = {
    "optimizer": "adam",  # adam | sgd
    "lr": 1e-3,
    "weight_decay": 0.0,  # L2 penalty applied by the optimizer
    "momentum": 0.9,  # sgd only
}

HPARAMS: dict[str, dict[str, Any]] = {
    "erm": {},
    "reweight": {"by": "group"},
    "group_dro": {"eta": 0.01, "adjustment": 0.0},  # adjustment = C of C / sqrt(n_g)
    "spectral_decoupling": {"lambda": 0.1},
    "mindiff": {"weight": 1.0, "kernel": "gaussian", "kernel_length": 0.1,
                "group_a": 0, "group_b": 1, "only_label": None},
    "flooding": {"b": 0.05},
    "hard_example_mining": {"keep_fraction": 0.5},
    "adversarial_training": {"attack": "fgsm", "epsilon": 0.1, "steps": 1, "step_size": None,
                             "adversarial_weight": 0.5, "clip_min": 0.0, "clip_max": 1.0},
    "dann": {"lambda": 1.0, "discriminator_width": 64},
}

CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("adam", "sgd"),
    "by": ("class", "group"),
    "kernel": ("gaussian", "laplacian"),
    "attack": ("fgsm", "pgd"),
}


def default_hparams(method: str) -> dict[str, Any]:
    if method not in HPARAMS:
        raise TrustlabError(f"unknown training method {method!r}; choose one of: "
                            f"{', '.join(sorted(HPARAMS))}")
    return {**OPTIMIZER, **HPARAMS[method]}


def resolve_hparams(method: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults of ``method`` updated by ``overrides``; unknown keys and choices raise."""
    hp = default_hparams(method)
    for key, value in (overrides or {}).items():
        if key not in hp:
            raise TrustlabError(f"training method {method!r} has no hyper-parameter {key!r}; "
                                f"known: {', '.join(sorted(hp))}")
        if key in CHOICES and value not in CHOICES[key]:
            raise TrustlabError(f"hyper-parameter {key!r} must be one of "
                                f"{', '.join(CHOICES[key])}, got {value!r}")
        hp[key] = value
    return hp
