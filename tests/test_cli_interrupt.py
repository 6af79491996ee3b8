"""Ctrl-C during `trustlab run`: exit 130 with one line, finished trials kept, resumable."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _count(db: Path) -> int:
    try:
        con = sqlite3.connect(db)
        try:
            return con.execute("SELECT COUNT(*) FROM trials WHERE status='ok'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigint_exits_130_and_the_sweep_resumes(tmp_path, workers):
    exp = tmp_path / "slow.yaml"
    exp.write_text(textwrap.dedent("""
        name: slow
        kind: "test_value"
        params: {sleep: 0.4}
        seeds: [0, 1, 2, 3]
        grid:
          params.a: [1, 2]
    """))
    out = tmp_path / "out"
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "trustlab", "run", str(exp), "--out", str(out),
           "--workers", workers]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while _count(out / "results.sqlite") < 2 and time.monotonic() < deadline:
        assert proc.poll() is None
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends to the whole group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]  # progress goes to stderr
    assert lines[-1] == "trustlab: interrupted" and "Traceback" not in err, err
    done = _count(out / "results.sqlite")
    assert 2 <= done < 8
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert _count(out / "results.sqlite") == 8
    con = sqlite3.connect(out / "results.sqlite")  # an interrupted trial is not a failure
    try:
        assert con.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 8
    finally:
        con.close()
