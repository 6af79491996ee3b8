"""Test-only trial kinds (no tests here), registered as plugins: ``kind: test_value``.

conftest.py names this module in ``TRUSTLAB_PLUGINS``, so every process of a sweep (the
pytest process, a ``trustlab run`` subprocess, spawned workers) imports it and registers
the kind through the Python API, as a third-party plugin module would.

They are tiny and fast so the engine's tests (resume after SIGKILL, failures, crashes,
determinism across executors) do not depend on training real models. Every value they
return is a deterministic function of the seed and params, so an independent oracle in
the test can recompute it.
"""

from __future__ import annotations

import os
import time

import numpy as np

LOG_ENV = "TRUSTLAB_TEST_TRIAL_LOG"


def expected_metrics(a: float, seed: int) -> dict[str, float]:
    """The oracle: what :func:`value` must return for ``params.a`` and ``seed``."""
    rng = np.random.RandomState(seed)  # the engine seeds numpy's global RNG with the seed
    draw = float(rng.rand())
    return {"accuracy": 0.5 + 0.1 * a + 0.01 * draw,
            "demographic_parity_difference": 0.05 * a + 0.001 * draw,
            "draw": draw}


def value(cfg, seed, ctx):
    """Metrics from numpy's *global* RNG (checks the engine seeded it) and ``params.a``.

    ``params.sleep`` sleeps, ``params.fail_when_a`` raises, ``params.crash_when_a`` kills
    the worker process; ``params.artifact`` (a byte count) returns an artifact
    ``blob.bin`` of that many bytes; each execution appends the trial id to
    ``$TRUSTLAB_TEST_TRIAL_LOG``.
    """
    p = cfg.params
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as fh:
            fh.write(ctx.trial_id + "\n")
    a = float(p.get("a", 0))
    if p.get("sleep"):
        time.sleep(float(p["sleep"]))
    if "fail_when_a" in p and a == float(p["fail_when_a"]):
        raise ValueError(f"planned failure for a={a:g}")
    if "crash_when_a" in p and a == float(p["crash_when_a"]):
        os._exit(3)  # like a segfault or the OOM killer: no exception, the process is gone
    draw = float(np.random.rand())
    metrics = {"accuracy": 0.5 + 0.1 * a + 0.01 * draw,
               "demographic_parity_difference": 0.05 * a + 0.001 * draw,
               "draw": draw}
    if p.get("artifact"):
        from trustlab.experiments.kinds import TrialOutput

        return TrialOutput(metrics=metrics, artifacts={"blob.bin": b"x" * int(p["artifact"])})
    return metrics


from trustlab.experiments.kinds import GenericConfig, TrialKind, get_kind, register_kind  # noqa: E402
from trustlab.errors import TrustlabError  # noqa: E402

KIND_NAME = "test_value"

try:
    get_kind(KIND_NAME)
except TrustlabError:
    register_kind(TrialKind(name=KIND_NAME, run=value, config_model=GenericConfig,
                            description="test-only: metrics from the seed and params.a"))
