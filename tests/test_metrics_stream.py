"""The streamed audit (a table read a chunk at a time) equals the in-memory audit: same
counts, metrics, disparities and bootstrap intervals, from Parquet record batches, CSV
chunks and Dask partitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trustlab import audit
from trustlab.errors import TrustlabError
from trustlab.metrics import audit_table
from trustlab.metrics.stream import count_combinations


@pytest.mark.parametrize("groups", [["sex"], ["sex", "race"]])
def test_parquet_and_csv_chunks_equal_the_in_memory_audit(adult_predictions, tmp_path, groups):
    df = adult_predictions[["label", "pred", *dict.fromkeys(["sex", "race"])]]
    kw = dict(privileged="Male", ci=0.9, n_boot=300) if groups == ["sex"] else {}
    want = audit(df["label"], df["pred"], df[groups], **kw).to_dict()
    parquet = tmp_path / "p.parquet"
    df.to_parquet(parquet, row_group_size=3000)
    csv = tmp_path / "p.csv"
    df.to_csv(csv, index=False)
    for source in (parquet, csv):
        got = audit_table(source, label="label", pred="pred", groups=groups,
                          chunk_rows=2500, **kw).to_dict()
        assert got == want, source


def test_dask_partitions_equal_the_in_memory_audit(adult_predictions):
    dd = pytest.importorskip("dask.dataframe")
    df = adult_predictions[["label", "pred", "sex", "race"]]
    ddf = dd.from_pandas(df, npartitions=5)
    want = audit(df["label"], df["pred"], df[["sex", "race"]]).to_dict()
    got = audit_table(ddf, label="label", pred="pred", groups=["sex", "race"]).to_dict()
    assert got == want


def test_categorical_codes_are_counted_like_values():
    frame = pd.DataFrame({"g": pd.Categorical(["b", "a", "b", "c"], categories=["c", "b", "a"]),
                          "y": [1, 0, 1, 1], "p": [1, 1, 1, 0]})
    counts = count_combinations(frame, ["g", "y", "p"])
    assert counts == {("b", 1, 1): 2, ("a", 0, 1): 1, ("c", 1, 0): 1}


def test_streaming_errors_are_one_line(tmp_path):
    path = tmp_path / "gaps.csv"
    pd.DataFrame({"y": [0, 1, 1], "p": [0, 1, None], "g": ["a", "b", "a"]}).to_csv(path,
                                                                                  index=False)
    with pytest.raises(TrustlabError, match=r"gaps.csv: column 'p' has 1 missing values"):
        audit_table(path, label="y", pred="p", groups=["g"])
    with pytest.raises(TrustlabError, match=r"no column 'q'"):
        audit_table(path, label="y", pred="q", groups=["g"])
    with pytest.raises(TrustlabError, match="ROC AUC needs every row"):
        audit_table(path, label="y", pred="y", groups=["g"], y_score=np.zeros(3))
    empty = tmp_path / "empty.csv"
    empty.write_text("y,p,g\n")
    with pytest.raises(TrustlabError, match="has a header but no rows"):
        audit_table(empty, label="y", pred="p", groups=["g"])


def test_joint_codes_that_would_overflow_are_redensified(monkeypatch):
    from trustlab.metrics import encoding

    rng = np.random.default_rng(0)
    n = 500
    cols = {c: rng.choice([f"{c}{i}" for i in range(30)], n) for c in "abc"}
    y, p = rng.integers(0, 2, n), rng.integers(0, 2, n)
    frame = pd.DataFrame({"y": y, "p": p, **cols})
    want = audit(y, p, frame[list("abc")]).to_dict()
    want_counts = count_combinations(frame, ["y", "p", *"abc"])
    monkeypatch.setattr(encoding, "JOINT_LIMIT", 50)  # force the overflow paths
    assert audit(y, p, frame[list("abc")]).to_dict() == want
    assert count_combinations(frame, ["y", "p", *"abc"]) == want_counts


def test_csv_column_typed_differently_per_chunk_keeps_its_groups(tmp_path):
    g = [1, 2] * 10 + ["x", 1, 2] * 5
    frame = pd.DataFrame({"y": [0, 1] * 17 + [1], "p": [0, 1] * 17 + [0], "g": g})
    path = tmp_path / "mixed.csv"
    frame.to_csv(path, index=False)
    whole = pd.read_csv(path)  # one read: the column is text throughout
    want = audit(whole["y"], whole["p"], whole["g"]).to_dict()
    got = audit_table(path, label="y", pred="p", groups=["g"], chunk_rows=8).to_dict()
    assert got == want and set(got["by_group"]) == {"1", "2", "x"}


def test_categories_of_mixed_types_audit_like_objects():
    y = np.array([0, 1, 1, 0])
    g = pd.Series(pd.Categorical([1, "a", 1, "a"]))
    assert audit(y, y, g).to_dict() == audit(y, y, g.astype(object)).to_dict()
