"""Same config + same seed = same metrics, whatever the number of workers.

SMOTE's nearest neighbours and BLAS reductions round differently with the thread count,
so trials run with a fixed thread count; this checks a real SMOTE + XGBoost sweep gives
bit-identical metrics in-process (1 worker) and in 2 worker processes.
"""

from __future__ import annotations

import textwrap

from trustlab.cli import main
from trustlab.experiments.results import load_results

EXPERIMENT = """
name: determinism
dataset: {name: adult, sensitive: sex, privileged: Male, subsample: 0.2}
model: {name: xgboost, params: {n_estimators: 30}}
mitigation: {name: smote}
seeds: [0, 1]
grid:
  mitigation.name: [smote, reweighing]
"""


def _metrics(out):
    return {t["trial_id"]: {k: v for k, v in t["metrics"].items() if k != "train_time_s"}
            for t in load_results(out).trials}


def test_metrics_do_not_depend_on_worker_count(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(EXPERIMENT))
    assert main(["run", str(path), "--out", str(tmp_path / "one"), "--workers", "1"]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert len(one) == 4 and one == two
