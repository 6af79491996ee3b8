"""The engine: store, resume after SIGKILL, failures, worker crashes, results formats."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from test_experiments_helpers import LOG_ENV, expected_metrics
from trustlab.cli import main
from trustlab.experiments.config import load_experiment
from trustlab.experiments.store import DB_NAME, Store

TESTS = Path(__file__).resolve().parent
KIND = "test_value"


def experiment(tmp_path, *, params="{a: 0}", grid="[1, 2, 3]", seeds="[0, 1]",
               name="engine") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        name: {name}
        kind: "{KIND}"
        params: {params}
        seeds: {seeds}
        grid:
          params.a: {grid}
    """))
    return path


def rows(out: Path) -> list[sqlite3.Row]:
    con = sqlite3.connect(out / DB_NAME)
    con.row_factory = sqlite3.Row
    try:
        return con.execute("SELECT * FROM trials").fetchall()
    finally:
        con.close()


def check_oracle(out: Path) -> None:
    with Store(out) as store:
        for t in store.trials():
            if t["status"] == "ok":
                assert t["metrics"] == pytest.approx(
                    expected_metrics(t["params"]["params.a"], t["seed"]), rel=0, abs=0)


def test_run_stores_every_trial_and_resume_skips_them(tmp_path, capsys):
    path = experiment(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "mean ± std" in captured.out and "params.a" in captured.out
    plan = [t.trial_id for t in load_experiment(path).trials]
    got = rows(out)
    assert sorted(r["trial_id"] for r in got) == sorted(plan)
    assert all(r["status"] == "ok" for r in got)
    check_oracle(out)  # metrics equal the independent recomputation, per seed and a
    with Store(out) as store:
        t = store.trials()[0]
        assert set(t["versions"]) >= {"python", "numpy", "scikit-learn", "trustlab"}
        assert t["duration_s"] >= 0 and t["started_at"] <= t["finished_at"]
        meta = store.meta()
        assert meta["name"] == "engine" and meta["grid_keys"] == ["params.a"]
        assert "params.a" in meta["source_yaml"]

    # re-running skips everything; nothing is executed again
    log = tmp_path / "log.txt"
    os.environ[LOG_ENV] = str(log)
    try:
        assert main(["run", str(path), "--out", str(out)]) == 0
    finally:
        del os.environ[LOG_ENV]
    assert not log.exists()
    assert "6 skipped" in capsys.readouterr().err
    with Store(out) as store:
        runs = store.runs()
        assert [r["n_skipped"] for r in runs] == [0, 6] and runs[1]["n_ok"] == 0

    # results formats
    assert main(["results", str(out), "--format", "json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert {i["trial_id"] for i in items} == set(plan)
    assert all(set(i) == {"trial_id", "status", "params", "metrics"} for i in items)
    first = next(i for i in items if i["params"]["params.a"] == 2 and i["params"]["seed"] == 1)
    assert first["metrics"] == pytest.approx(expected_metrics(2, 1))
    assert main(["results", str(out), "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(table) == 6 and {"trial_id", "status", "params.a", "seed", "accuracy"} <= set(
        table[0])
    assert main(["results", str(out)]) == 0
    assert "0.7" in capsys.readouterr().out  # a=2 -> accuracy 0.7 + noise < 0.01
    assert main(["results", str(out), "--format", "xml"]) == 2


def test_summary_is_mean_and_std_over_seeds(tmp_path):
    import numpy as np

    from trustlab.experiments.results import load_results

    out = tmp_path / "out"
    assert main(["run", str(experiment(tmp_path, seeds="[0, 1, 2]")), "--out", str(out)]) == 0
    summary = load_results(out).summary(["accuracy"])
    assert list(summary["params.a"]) == [1, 2, 3]
    for _, row in summary.iterrows():
        vals = [expected_metrics(row["params.a"], s)["accuracy"] for s in (0, 1, 2)]
        assert row["accuracy_mean"] == pytest.approx(np.mean(vals))
        assert row["accuracy_std"] == pytest.approx(np.std(vals, ddof=1))
        assert row["n_ok"] == 3


def test_failing_trial_is_recorded_others_finish_exit_nonzero(tmp_path, capsys):
    path = experiment(tmp_path, params="{fail_when_a: 2}")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    summary = [ln for ln in err.splitlines() if ln.startswith("trustlab: error:")]
    assert len(summary) == 1
    assert "2 of 6 trials failed" in summary[0] and "planned failure for a=2" in summary[0]
    got = {(r["trial_id"]): r for r in rows(out)}
    assert len(got) == 6
    failed = [r for r in got.values() if r["status"] == "failed"]
    assert len(failed) == 2
    assert all(r["error"] == "ValueError: planned failure for a=2" for r in failed)
    assert all("Traceback" in r["traceback"] for r in failed)
    check_oracle(out)
    # failed trials are retried on the next run (and fail again, attempts counted)
    assert main(["run", str(path), "--out", str(out)]) == 1
    again = {r["trial_id"]: r for r in rows(out)}
    assert len(again) == 6
    assert sorted(r["attempts"] for r in again.values()) == [1, 1, 1, 1, 2, 2]


def test_worker_crash_marks_only_that_trial_failed(tmp_path, capsys):
    path = experiment(tmp_path, params="{crash_when_a: 3}", seeds="[0]")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--workers", "2"]) == 1
    assert "1 of 3 trials failed" in capsys.readouterr().err
    got = rows(out)
    status = {json.loads(r["params"])["params.a"]: (r["status"], r["error"]) for r in got}
    assert status[1][0] == "ok" and status[2][0] == "ok"
    assert status[3][0] == "failed" and "worker process died" in status[3][1]
    check_oracle(out)


def test_resume_after_sigkill(tmp_path):
    """Kill a running sweep; re-run; every trial exactly once, finished ones not re-run,
    metrics equal to an uninterrupted run."""
    path = experiment(tmp_path, params="{sleep: 0.3}", grid="[1, 2, 3, 4]", seeds="[0, 1, 2]")
    out = tmp_path / "killed"
    log = tmp_path / "executions.log"
    env = {**os.environ, LOG_ENV: str(log),
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "trustlab", "run", str(path), "--out",
                             str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (out / DB_NAME).exists():
                try:
                    if len(rows(out)) >= 2:
                        break
                except sqlite3.OperationalError:
                    pass  # schema not created yet
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = {r["trial_id"]: dict(r) for r in rows(out)}
    plan = [t.trial_id for t in load_experiment(path).trials]
    assert 2 <= len(before) < len(plan)

    os.environ[LOG_ENV] = str(log)
    try:
        assert main(["run", str(path), "--out", str(out)]) == 0
    finally:
        del os.environ[LOG_ENV]
    after = rows(out)
    ids = [r["trial_id"] for r in after]
    assert sorted(ids) == sorted(plan) and len(ids) == len(set(ids))  # each exactly once
    executed = Counter(log.read_text().split())
    for tid, row in before.items():  # finished before the kill: kept, never re-run
        assert executed[tid] == 1
        now = next(r for r in after if r["trial_id"] == tid)
        assert (now["started_at"], now["run_id"], now["attempts"]) == (
            row["started_at"], row["run_id"], 1)
    assert all(executed[t] >= 1 for t in plan)

    fresh = tmp_path / "fresh"
    assert main(["run", str(path), "--out", str(fresh)]) == 0
    metrics = {r["trial_id"]: json.loads(r["metrics"]) for r in after}
    assert metrics == {r["trial_id"]: json.loads(r["metrics"]) for r in rows(fresh)}


def test_store_refuses_another_experiment(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(experiment(tmp_path, seeds="[0]")), "--out", str(out)]) == 0
    other = experiment(tmp_path, seeds="[0]", name="other")
    assert main(["run", str(other), "--out", str(out)]) == 2
    assert "holds experiment 'engine'" in capsys.readouterr().err
    assert main(["results", str(tmp_path / "nothing")]) == 2


def test_slurm_block_builds_a_slurm_cluster(tmp_path):
    from trustlab.experiments.executors import make_slurm_cluster

    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(f"""
        name: s
        kind: "{KIND}"
        executor:
          slurm: {{cores: 4, memory: 8GB, walltime: "00:30:00", queue: gpu, jobs: 2,
                   job_extra_directives: ["--exclusive"]}}
    """))
    exp = load_experiment(path)
    slurm = exp.engine.executor.slurm
    assert slurm.jobs == 2
    cluster = make_slurm_cluster(slurm)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p gpu" in script and "#SBATCH --cpus-per-task=4" in script
    assert "#SBATCH --exclusive" in script and "#SBATCH -t 00:30:00" in script


def test_executor_slurm_without_slurm_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(f"""
        name: s
        kind: "{KIND}"
        executor:
          slurm: {{jobs: 1}}
    """))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2  # slurm: the block's default
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sbatch is not on PATH" in err[0]
    assert not out.exists()
    assert main(["run", str(path), "--out", str(out), "--executor", "local",
                 "--jobs", "2"]) == 2
    assert "--jobs sets a Slurm job's resources" in capsys.readouterr().err
