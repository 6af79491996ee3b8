"""The engine under bad input and hostile conditions: one-line errors (no traceback, nothing
written), read-only results, one run per directory, workers that die with the driver,
one log line per trial."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from test_experiments_helpers import LOG_ENV, expected_metrics
from trustlab.cli import main
from trustlab.errors import TrustlabError
from trustlab.experiments import executors
from trustlab.experiments.config import load_experiment, parse_yaml
from trustlab.experiments.lock import RunLock
from trustlab.experiments.store import DB_NAME

TESTS = Path(__file__).resolve().parent
KIND = "test_value"


def experiment(tmp_path, *, params="{a: 0}", grid="[1, 2]", seeds="[0]", name="robust",
               extra="") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        name: {name}
        kind: "{KIND}"
        params: {params}
        seeds: {seeds}
        grid:
          params.a: {grid}
    """) + extra)
    return path


def one_line_error(capsys, *needles: str) -> str:
    """The command's stderr is exactly one `trustlab: error:` line containing ``needles``."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("trustlab: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- bad input: one line, exit 2, nothing written --------------------------------------------
def test_bad_run_inputs_are_one_line_errors_and_write_nothing(tmp_path, capsys):
    good = experiment(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: x\n\xff\xfe\x00\x81 garbage")
    assert main(["run", str(binary), "--out", str(tmp_path / "o1")]) == 2
    one_line_error(capsys, "binary.yaml", "not a UTF-8")

    a_file = tmp_path / "ok.csv"
    a_file.write_text("x\n")
    assert main(["run", str(good), "--out", str(a_file)]) == 2
    one_line_error(capsys, "ok.csv", "is a file")
    assert a_file.read_text() == "x\n"
    assert main(["run", str(good), "--out", str(a_file / "sub")]) == 2
    one_line_error(capsys, "cannot create output directory", "Not a directory")
    assert main(["run", str(good), "--out", "/proc/nope"]) == 2  # even root cannot
    one_line_error(capsys, "cannot create output directory /proc/nope")

    out = tmp_path / "dask-out"
    assert main(["run", str(good), "--out", str(out), "--executor", "dask",
                 "--scheduler", "garbage"]) == 2
    one_line_error(capsys, "cannot connect to Dask scheduler garbage", "missing port")
    assert not out.exists()

    negative = experiment(tmp_path, seeds="[0, -1]", name="neg")
    assert main(["run", str(negative), "--out", str(tmp_path / "neg")]) == 2
    one_line_error(capsys, "seeds:", "got -1")
    assert main(["run", str(good), "--out", str(tmp_path / "big"),
                 "--set", f"seeds=[{2**32}]"]) == 2
    one_line_error(capsys, "seeds:", f"got {2**32}")
    assert not (tmp_path / "neg").exists() and not (tmp_path / "big").exists()
    assert load_experiment(good, ["seeds=[0, 4294967295]"]).engine.seeds == [0, 2**32 - 1]


def test_unreachable_scheduler_leaves_no_store(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT", "0.5s")  # a refused port retries
    out = tmp_path / "out"
    t0 = time.monotonic()
    assert main(["run", str(experiment(tmp_path)), "--out", str(out), "--executor", "dask",
                 "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert time.monotonic() - t0 < 10
    one_line_error(capsys, "cannot connect to Dask scheduler tcp://127.0.0.1:1")
    assert not out.exists()  # connected before the store: no metadata, no unfinished run


def test_results_and_report_on_a_file_that_is_not_a_store(tmp_path, capsys):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / DB_NAME).write_bytes(b"this is not sqlite\n" * 10)
    for cmd in (["results", str(junk)], ["report", str(junk)],
                ["run", str(experiment(tmp_path)), "--out", str(junk)]):
        assert main(cmd) == 2
        one_line_error(capsys, "is not a trustlab results database")
    assert (junk / DB_NAME).read_bytes() == b"this is not sqlite\n" * 10  # never overwritten

    other = tmp_path / "other"  # a real SQLite file, but someone else's
    other.mkdir()
    con = sqlite3.connect(other / DB_NAME)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    assert main(["results", str(other)]) == 2
    one_line_error(capsys, "is not a trustlab results database", "missing tables")


# -- YAML ---------------------------------------------------------------------------------------
def test_duplicate_yaml_keys_are_rejected_with_key_and_line(tmp_path, capsys):
    path = tmp_path / "dup.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: dup
        kind: "{KIND}"
        params: {{a: 1}}
        seeds: [0]
        params: {{a: 2}}
    """))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys, "dup.yaml", "line 5", "duplicate key 'params'", "first at line 3")
    assert not (tmp_path / "out").exists()
    with pytest.raises(TrustlabError, match=r"duplicate key 'b'"):
        parse_yaml("a:\n  b: 1\n  c: 2\n  b: 3\n", "nested")
    with pytest.raises(TrustlabError, match=r"duplicate key 'b'"):
        parse_yaml("a: {b: 1, b: 1}", "flow")
    # a merge key may still be overridden by the keys after it (that is what it is for)
    assert parse_yaml("x: &x {a: 1, c: 2}\ny:\n  <<: *x\n  a: 3\n", "merge")["y"] == {
        "a": 3, "c": 2}


# -- read-only results ------------------------------------------------------------------------
@contextlib.contextmanager
def unprivileged():
    """Drop write permission for real: root ignores mode bits, so act as `nobody`."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_results_read_a_read_only_directory_without_writing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(experiment(tmp_path, params="{fail_when_a: 2}", seeds="[0, 1]")),
                 "--out", str(out)]) == 1
    capsys.readouterr()
    assert main(["results", str(out)]) == 0  # imports everything `results` needs, as us
    expected = capsys.readouterr().out
    # Only the database file (no -wal/-shm), in a directory `nobody` can read but not write:
    # the case where opening read-write (or even mode=ro on a WAL file) fails.
    base = Path(tempfile.mkdtemp(prefix="trustlab-ro-"))
    try:
        os.chmod(base, 0o755)
        ro = base / "ro"
        ro.mkdir()
        shutil.copy(out / DB_NAME, ro / DB_NAME)
        digest = hashlib.sha256((ro / DB_NAME).read_bytes()).hexdigest()
        os.chmod(ro / DB_NAME, 0o444)
        os.chmod(ro, 0o555)
        with unprivileged():
            with pytest.raises(PermissionError):  # the setup really is read-only
                (ro / "probe").write_text("x")
            codes = [main(["results", str(ro), "--format", f]) for f in ("table", "json")]
        captured = capsys.readouterr()
        assert codes == [0, 0], captured.err
        assert "Traceback" not in captured.err
        assert captured.out.startswith(expected)  # the same table (2/2 and 0/2 ok/n)
        assert "2/2" in expected and "0/2" in expected and "planned failure" in expected
        assert '"status": "failed"' in captured.out
        assert sorted(os.listdir(ro)) == [DB_NAME]
        assert hashlib.sha256((ro / DB_NAME).read_bytes()).hexdigest() == digest
    finally:
        for d in (base / "ro", base):
            if d.exists():
                os.chmod(d, 0o755)
        shutil.rmtree(base)


def test_ok_over_n_is_shown_as_integers_when_trials_fail(tmp_path, capsys):
    from trustlab.experiments.results import load_results

    out = tmp_path / "out"
    assert main(["run", str(experiment(tmp_path, params="{fail_when_a: 2}",
                                       seeds="[0, 1, 2]")), "--out", str(out)]) == 1
    capsys.readouterr()
    assert main(["results", str(out)]) == 0
    table = capsys.readouterr().out
    cells = re.findall(r"\b(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)\b", table)
    assert sorted(cells) == [("0", "3"), ("3", "3")], table
    summary = load_results(out).summary(["accuracy"])
    assert summary["n_ok"].tolist() == [3, 0] and summary["n_failed"].tolist() == [0, 3]
    mean = sum(expected_metrics(1, s)["accuracy"] for s in (0, 1, 2)) / 3
    assert summary["accuracy_mean"].iloc[0] == pytest.approx(mean)


# -- one run per output directory --------------------------------------------------------------
def test_second_run_on_the_same_directory_is_refused(tmp_path, capsys):
    path = experiment(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    log = tmp_path / "executions.log"
    os.environ[LOG_ENV] = str(log)
    try:
        with RunLock(out):  # another run holds it (flock is per open file: same process works)
            assert main(["run", str(path), "--out", str(out)]) == 2
            one_line_error(capsys, f"another trustlab run is using {out} (pid {os.getpid()})")
        assert not log.exists() and not (out / DB_NAME).exists()  # did no work
        assert main(["run", str(path), "--out", str(out)]) == 0  # released: runs
    finally:
        del os.environ[LOG_ENV]
    assert len(log.read_text().split()) == 2
    with RunLock(out):  # and the run released it on exit
        pass


# -- log output ---------------------------------------------------------------------------------
def test_log_file_gets_one_unwrapped_line_per_trial(tmp_path, capsys):
    note = "a-rather-long-grid-value-" * 4  # makes every trial line wider than 80 columns
    path = experiment(tmp_path, params="{fail_when_a: 2}", seeds="[0, 1]",
                      extra=f"  params.note: [{note}]\n")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    trial_lines = [ln for ln in err.splitlines() if re.match(r"\[\d+/4\] [0-9a-f]{16} ", ln)]
    assert len(trial_lines) == 4, err
    for ln in trial_lines:
        assert len(ln) > 80 and note in ln and ln.rstrip().endswith(
            ("ok", "FAILED: ValueError: planned failure for a=2"))
    trial_ids = {t.trial_id for t in load_experiment(path).trials}
    # no other line mentions a trial id: nothing spilled onto a continuation line
    assert sum(tid in ln for ln in err.splitlines() for tid in trial_ids) == 4 + 1  # + summary


# -- workers die with the driver ----------------------------------------------------------------
def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for f in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            out.update(int(x) for x in f.read_text().split())
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie is dead; only init may still have to reap it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_the_driver_is_killed(tmp_path):
    path = experiment(tmp_path, params="{sleep: 60}", grid="[1, 2]")
    log = tmp_path / "executions.log"
    env = {**os.environ, LOG_ENV: str(log),
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "trustlab", "run", str(path), "--out",
                             str(tmp_path / "out"), "--workers", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # both workers are inside a trial
            kids |= _children(proc.pid)
            if log.exists() and len(log.read_text().split()) == 2:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        kids |= _children(proc.pid)
        workers = {k for k in kids if _alive(k)}
        assert len(workers) >= 2  # two pool workers (and the resource tracker)
        proc.kill()  # SIGKILL the driver only, as the OOM killer or `kill -9` would
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(_alive(k) for k in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [k for k in workers if _alive(k)], "orphaned workers still running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for k in kids:  # never leave our own orphans behind, even when the test fails
            if _alive(k):
                with contextlib.suppress(OSError):
                    os.kill(k, signal.SIGKILL)
