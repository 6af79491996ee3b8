"""`trustlab audit` and `trustlab datasets` end to end, including every bad-input case."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from trustlab import audit


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from trustlab.cli import entry; entry()",
                           *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def preds_csv(tmp_path_factory, adult_predictions):
    path = tmp_path_factory.mktemp("audit") / "preds.csv"
    adult_predictions.to_csv(path, index=False)
    return path


def test_json_equals_python_api(preds_csv, adult_predictions):
    out = run_cli("audit", str(preds_csv), "--label", "label", "--pred", "pred",
                  "--group", "sex", "--privileged", "Male", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    df = adult_predictions
    expected = audit(df["label"], df["pred"], df[["sex"]], privileged="Male").to_dict()
    assert got == expected
    assert set(got) == {"n", "groups", "overall", "by_group", "disparities"}


def test_intersections_and_parquet(tmp_path, adult_predictions):
    path = tmp_path / "preds.parquet"
    adult_predictions.to_parquet(path)
    out = run_cli("audit", str(path), "--label", "label", "--pred", "pred", "--score", "score",
                  "--group", "sex", "--group", "race", "--json")
    assert out.returncode == 0, out.stderr
    keys = set(json.loads(out.stdout)["by_group"])
    assert "Female|Black" in keys and "Male|White" in keys
    assert len(keys) == adult_predictions.groupby(["sex", "race"]).ngroups


def test_human_output_is_a_table(preds_csv):
    out = run_cli("audit", str(preds_csv), "--label", "label", "--pred", "pred",
                  "--group", "sex", "--privileged", "Male", "--ci", "0.9")
    assert out.returncode == 0, out.stderr
    assert "statistical_parity_difference" in out.stdout and "90% CI" in out.stdout


def _bad(tmp_path, content: str | bytes, name="bad.csv"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("case, args, needle", [
    ("missing column", ["--label", "nope", "--pred", "pred", "--group", "sex"], "no column 'nope'"),
    ("nan labels", ["--label", "label_nan", "--pred", "pred", "--group", "sex"], "missing values"),
    ("non-binary privileged", ["--label", "label", "--pred", "pred", "--group", "race",
                               "--privileged", "a"], "binary group"),
    ("unknown privileged", ["--label", "label", "--pred", "pred", "--group", "sex",
                            "--privileged", "Martian"], "does not occur"),
])
def test_bad_input_one_line_no_traceback(tmp_path, case, args, needle):
    frame = pd.DataFrame({"label": [0, 1, 1, 0], "label_nan": [0, None, 1, 0],
                          "pred": [0, 1, 0, 0], "sex": ["F", "M", "F", "M"],
                          "race": ["a", "b", "c", "a"]})
    path = tmp_path / "p.csv"
    frame.to_csv(path, index=False)
    out = run_cli("audit", str(path), *args)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], (case, out.stderr)


@pytest.mark.parametrize("content, needle", [
    ("", "empty"),
    ("label,pred,sex\n", "no rows"),
    (b"\x00\x01\x02PAR1garbage", "cannot"),
])
def test_unreadable_files(tmp_path, content, needle):
    name = "bad.parquet" if isinstance(content, bytes) else "bad.csv"
    path = _bad(tmp_path, content, name)
    out = run_cli("audit", str(path), "--label", "label", "--pred", "pred", "--group", "sex")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_missing_file_and_missing_option(tmp_path):
    out = run_cli("audit", str(tmp_path / "none.csv"), "--label", "a", "--pred", "b",
                  "--group", "c")
    assert out.returncode != 0 and "no such file" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("audit", str(tmp_path / "none.csv"), "--label", "a")
    assert out.returncode != 0 and "Traceback" not in out.stderr


def test_datasets_json_lists_everything():
    out = run_cli("datasets", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    for name in ("adult", "compas", "german", "mnist", "digits", "colored_mnist", "cifar10",
                 "waterbirds", "celeba"):
        assert name in rows, name
        assert set(rows[name]) >= {"name", "rows", "groups", "available", "source"}
    assert rows["adult"]["available"] and rows["adult"]["rows"] == 48842
