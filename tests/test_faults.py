"""Faults a user meets outside the happy path: a damaged results store (one line, and a
salvage that keeps every readable trial), a full disk while writing artifacts, stale rows
of a config since fixed, unreadable report artifacts, dataset files that fail their
checksum."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from pathlib import Path

import pytest

from test_experiments_helpers import expected_metrics
from test_experiments_robustness import experiment
from trustlab.cli import main
from trustlab.experiments.results import load_results
from trustlab.experiments.store import DB_NAME
from trustlab.report.artifacts import ArtifactReader


def one_line_error(capsys, *needles: str) -> str:
    """stderr ends with one `trustlab: error:` line holding ``needles`` (a run's progress
    lines may come before it) and has no traceback."""
    err = capsys.readouterr().err
    errors = [ln for ln in err.strip().splitlines() if ln.startswith("trustlab: error: ")]
    assert len(errors) == 1 and err.strip().endswith(errors[0]), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _damage(db: Path, first_page: int, n_pages: int) -> None:
    """Overwrite pages with garbage, keeping the header page (page 1) intact."""
    page = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(db.read_bytes())
    for i in range(first_page * page, min((first_page + n_pages) * page, len(data))):
        data[i] = (i * 131 + 7) % 256
    db.write_bytes(bytes(data))


def test_damaged_store_is_one_line_and_salvage_keeps_every_readable_trial(tmp_path, capsys):
    grid = "[" + ", ".join(str(a) for a in range(1, 31)) + "]"
    path = experiment(tmp_path, grid=grid, seeds="[0, 1, 2]")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--workers", "1"]) == 0
    capsys.readouterr()
    db = out / DB_NAME
    n_pages = db.stat().st_size // sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    assert n_pages >= 8, n_pages  # the damage below must hit trial pages, not all of them
    _damage(db, n_pages // 2, 2)
    for cmd in (["results", str(out)], ["report", str(out)],
                ["run", str(path), "--out", str(out)]):
        assert main(cmd) == 2
        one_line_error(capsys, str(db), "is damaged", "--salvage")

    rescued = tmp_path / "rescued"
    assert main(["results", str(out), "--salvage", str(rescued)]) == 0
    line = capsys.readouterr().out
    n = int(line.split("salvaged ")[1].split(" ")[0])
    lost = int(line.split(" unreadable")[0].rsplit("(", 1)[1])
    assert 0 < n < 90 and n + lost == 90, line
    results = load_results(rescued)
    assert len(results.trials) == n
    for t in results.trials:  # what was salvaged is exactly what the trials computed
        want = expected_metrics(t["params"]["params.a"], t["seed"])
        assert t["metrics"] == pytest.approx(want)
    # the salvaged store is a store: a run completes it, redoing only the lost trials
    assert main(["run", str(path), "--out", str(rescued), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert f"{90 - n} ok, 0 failed, {n} skipped" in err
    assert main(["results", str(out), "--salvage", str(rescued)]) == 2
    one_line_error(capsys, "already holds a results store")


def test_full_disk_while_writing_artifacts(tmp_path, capsys, monkeypatch):
    path = experiment(tmp_path, params="{a: 0, artifact: 1000}", grid="[1, 2, 3, 4]")
    out = tmp_path / "out"
    real_write = Path.write_bytes
    calls = {"n": 0}

    def full_disk(self, data):
        if self.name.endswith(".tmp"):
            calls["n"] += 1
            if calls["n"] == 3:  # the third artifact: half of it reaches the disk
                real_write(self, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    assert main(["run", str(path), "--out", str(out), "--workers", "1"]) == 2
    one_line_error(capsys, "No space left on device", "not counted as done")
    assert not list((out / "trials").glob("*/.*.tmp"))  # the half-written file is gone
    done = load_results(out).trials
    assert len(done) == 2 and all(t["status"] == "ok" for t in done)
    monkeypatch.setattr(Path, "write_bytes", real_write)
    (out / "trials" / "x").mkdir()
    (out / "trials" / "x" / ".blob.bin.tmp").write_bytes(b"left by a kill -9")
    assert main(["run", str(path), "--out", str(out), "--workers", "1"]) == 0
    assert "2 ok, 0 failed, 2 skipped" in capsys.readouterr().err
    assert not list((out / "trials").glob("*/.*.tmp"))
    for t in load_results(out).trials:
        assert (out / "trials" / t["trial_id"] / "blob.bin").read_bytes() == b"x" * 1000


def test_full_disk_in_the_store_is_one_line(tmp_path, capsys, monkeypatch):
    from trustlab.experiments import store as store_mod

    path = experiment(tmp_path)
    out = tmp_path / "out"

    def full(self, trial, result, run_id):
        exc = sqlite3.OperationalError("database or disk is full")
        exc.sqlite_errorname = "SQLITE_FULL"
        raise exc

    monkeypatch.setattr(store_mod.Store, "record", store_mod._guarded(full))
    assert main(["run", str(path), "--out", str(out), "--workers", "1"]) == 2
    one_line_error(capsys, "no space left", "results.sqlite", "run again to resume")


def test_stale_failed_rows_are_hidden_once_the_config_is_fixed(tmp_path, capsys):
    path = experiment(tmp_path, params="{a: 0, fail_when_a: 2}")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--workers", "1"]) == 1
    capsys.readouterr()
    path.write_text(path.read_text().replace("fail_when_a: 2", "fail_when_a: 99"))
    assert main(["run", str(path), "--out", str(out), "--workers", "1"]) == 0
    capsys.readouterr()
    current = load_results(out)
    # fail_when_a is in both trials' configs: both ids changed, both old rows are stale
    assert len(current.trials) == 2 and not current.failed() and current.hidden == 2
    everything = load_results(out, all_trials=True)
    assert len(everything.trials) == 4 and len(everything.failed()) == 1

    assert main(["results", str(out), "--format", "json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert "2 trial(s) of earlier configurations" in captured.err and "--all" in captured.err
    assert main(["results", str(out), "--format", "json", "--all"]) == 0
    assert sorted(r["status"] for r in json.loads(capsys.readouterr().out)) == \
        ["failed", "ok", "ok", "ok"]
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Failed trials" not in page and "earlier configurations" in page
    assert main(["report", str(out), "--all"]) == 0
    assert "Failed trials (1)" in (out / "report.html").read_text()


def test_artifact_reader_names_what_it_cannot_read(tmp_path):
    folder = tmp_path / "trials" / "t1"
    folder.mkdir(parents=True)
    (folder / "good.json").write_text('{"epochs": []}')
    (folder / "bad.json").write_text('{"epochs": [')
    (folder / "list.json").write_text("[1, 2]")
    (folder / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    reader = ArtifactReader(tmp_path)
    assert reader.json("t1", "good.json") == {"epochs": []}
    assert reader.json("t1", "absent.json") is None and reader.npz("t1", "absent.npz") is None
    assert reader.unreadable == []  # absent is not unreadable
    assert reader.json("t1", "bad.json") is None
    assert reader.json("t1", "list.json") is None
    assert reader.npz("t1", "bad.npz") is None
    assert [u.split(" ")[0] for u in reader.unreadable] == [
        "trials/t1/bad.json", "trials/t1/list.json", "trials/t1/bad.npz"]
    assert "3 artifact(s) could not be read" in reader.note()


def test_datasets_says_when_a_file_fails_its_checksum(tmp_path, capsys):
    folder = tmp_path / "german"
    folder.mkdir()
    (folder / "german.data").write_text("not the Statlog file\n")
    assert main(["datasets", "--data-dir", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["german"]["available"] is False
    assert rows["german"]["status"] == "present, checksum mismatch"
    assert rows["adult"]["status"] == "yes" and rows["adult"]["available"] is True
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "checksum mismatch: not the published files" in out


def test_salvage_of_a_store_whose_last_pages_are_torn_ends(tmp_path, capsys):
    grid = "[" + ", ".join(str(a) for a in range(1, 41)) + "]"
    out = tmp_path / "out"
    assert main(["run", str(experiment(tmp_path, grid=grid)), "--out", str(out),
                 "--workers", "1"]) == 0
    db = out / DB_NAME
    page = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    n_pages = db.stat().st_size // page
    _damage(db, n_pages - 1, 1)  # the last page: what a crash mid-write tears
    capsys.readouterr()
    assert main(["results", str(out), "--salvage", str(tmp_path / "rescued")]) == 0
    line = capsys.readouterr().out
    assert "salvaged" in line and "last pages are damaged" in line
    assert 0 < len(load_results(tmp_path / "rescued").trials) < 40


def test_a_really_full_database_is_one_line(tmp_path, capsys):
    from trustlab.experiments.store import Store

    out = tmp_path / "out"
    assert main(["run", str(experiment(tmp_path)), "--out", str(out), "--workers", "1"]) == 0
    with Store(out, create=True) as store:
        pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
        store.conn.execute(f"PRAGMA max_page_count = {pages}")  # no room for one more page
        with pytest.raises(Exception) as err:
            store.save_experiment({f"k{i}": "x" * 5000 for i in range(20)})
    assert "no space left" in str(err.value) and "cannot rollback" not in str(err.value)
