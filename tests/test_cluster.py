"""Integration tests against real daemons (`make test-cluster` starts them with
.ci/slurm-up.sh): a single-node Slurm through dask-jobqueue, and a Dask cluster of
separate `dask scheduler` / `dask worker` processes. Each skips where its daemons are
absent. Sweeps must finish with every trial exactly once when Slurm jobs are cancelled
or Dask workers killed mid-sweep, and end with one line when no worker comes back."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from test_experiments_helpers import LOG_ENV, expected_metrics
from trustlab.cli import main
from trustlab.experiments import executors
from trustlab.experiments.results import load_results

pytestmark = pytest.mark.cluster


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mix", "alloc"))


needs_slurm = pytest.mark.skipif(not _slurm_up(), reason="no running Slurm (make test-cluster)")


def _experiment(tmp_path, *, n: int, sleep: float, slurm: str = "") -> Path:
    path = tmp_path / "cluster.yaml"
    grid = ", ".join(str(a) for a in range(1, n + 1))
    path.write_text(textwrap.dedent(f"""
        name: cluster
        kind: test_value
        params: {{a: 0, sleep: {sleep}}}
        seeds: [0]
        grid:
          params.a: [{grid}]
    """) + slurm)
    return path


def _check_all_once(out: Path, n: int) -> None:
    trials = load_results(out).trials
    assert len(trials) == n and len({t["trial_id"] for t in trials}) == n
    for t in trials:
        assert t["status"] == "ok"
        assert t["metrics"]["accuracy"] == pytest.approx(
            expected_metrics(t["params"]["params.a"], 0)["accuracy"], abs=1e-12)


SLURM_BLOCK = """
executor:
  slurm: {jobs: 1, cores: 1, memory: 1GB, walltime: "00:10:00", watchdog: 120}
"""


@needs_slurm
def test_slurm_sweep_equals_local_and_logs_under_the_run(tmp_path, capsys):
    path = _experiment(tmp_path, n=4, sleep=0, slurm=SLURM_BLOCK)
    assert main(["run", str(path), "--out", str(tmp_path / "slurm")]) == 0  # slurm by default
    assert main(["run", str(path), "--out", str(tmp_path / "local"), "--executor", "local",
                 "--workers", "1"]) == 0
    assert "executor.slurm block is not used with --executor local" in capsys.readouterr().err
    metrics = [{t["trial_id"]: t["metrics"] for t in load_results(tmp_path / d).trials}
               for d in ("slurm", "local")]
    assert metrics[0] == metrics[1]
    assert list((tmp_path / "slurm" / "slurm-logs").glob("*.err"))
    run = load_results(tmp_path / "slurm").runs[-1]
    assert run["executor"].startswith("slurm, 1 job(s) x 1 core(s), 1GB")


@needs_slurm
def test_slurm_sweep_survives_cancelled_jobs(tmp_path, monkeypatch):
    log = tmp_path / "executions.log"
    monkeypatch.setenv(LOG_ENV, str(log))
    path = _experiment(tmp_path, n=8, sleep=1.0, slurm=SLURM_BLOCK)
    out = tmp_path / "out"

    def cancel_after_first_trials():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if log.exists() and len(log.read_text().splitlines()) >= 2:
                subprocess.run(["scancel", "--user", os.environ.get("USER", "root")],
                               check=False)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=cancel_after_first_trials, daemon=True)
    killer.start()
    assert main(["run", str(path), "--out", str(out)]) == 0
    killer.join()
    _check_all_once(out, 8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_scheduler(tmp_path):
    if shutil.which("dask", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("the dask command line is not installed")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    dask = str(Path(sys.executable).parent / "dask")
    sched = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    address = f"tcp://127.0.0.1:{port}"
    procs = [sched]

    def start_worker():
        w = subprocess.Popen([dask, "worker", address, "--nworkers", "1", "--nthreads", "1",
                              "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        procs.append(w)
        return w

    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.2)
    yield address, start_worker
    for p in procs:
        p.kill()
        p.wait()


def test_dask_sweep_survives_killed_workers(tmp_path, monkeypatch, dask_scheduler):
    address, start_worker = dask_scheduler
    log = tmp_path / "executions.log"
    monkeypatch.setenv(LOG_ENV, str(log))
    first = start_worker()
    path = _experiment(tmp_path, n=6, sleep=1.0)

    def kill_then_replace():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if log.exists() and len(log.read_text().splitlines()) >= 2:
                first.send_signal(signal.SIGKILL)
                time.sleep(1)
                start_worker()
                return
            time.sleep(0.2)

    t = threading.Thread(target=kill_then_replace, daemon=True)
    t.start()
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--executor", "dask",
                 "--scheduler", address]) == 0
    t.join()
    _check_all_once(out, 6)


def test_no_worker_ends_the_sweep_with_one_line(tmp_path, monkeypatch, capsys, dask_scheduler):
    address, _ = dask_scheduler  # a scheduler with no worker at all
    monkeypatch.setattr(executors, "WATCHDOG_S", 3.0)
    monkeypatch.setattr(executors, "WATCH_INTERVAL_S", 0.5)
    path = _experiment(tmp_path, n=2, sleep=0)
    t0 = time.monotonic()
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--executor", "dask",
                 "--scheduler", address]) == 2
    assert time.monotonic() - t0 < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert "no Dask worker for 3 s with 2 trial(s) left" in err[-1]
