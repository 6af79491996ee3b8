"""Tabular loaders: real row counts, splits, groups, cache/download/checksum paths."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from trustlab.data import load_dataset, sources, tabular
from trustlab.errors import DatasetNotFound, TrustlabError


def test_adult_official_split():
    ds = load_dataset("adult")
    assert ds.n_rows == 48842
    assert len(ds.train_idx) == 32561 and len(ds.test_idx) == 16281
    assert set(ds.groups.columns) >= {"sex", "race", "age"}
    assert set(ds.groups["sex"]) == {"Female", "Male"}
    assert ds.class_names == ["<=50K", ">50K"]
    # 24.08% of train and 23.62% of test earn >50K in the published data
    assert ds.y_train.mean() == pytest.approx(7841 / 32561)
    assert ds.y_test.mean() == pytest.approx(3846 / 16281)


def test_compas_and_german_sizes_and_seeded_split():
    compas = load_dataset("compas")
    # label 1 is the favorable outcome (no recidivism): 3,251 of 7,214 reoffended
    assert compas.class_names == ["recid", "no_recid"]
    assert int((compas.y == 0).sum()) == 3251
    assert compas.n_rows == 7214 and set(compas.groups["race_binary"]) == {
        "Caucasian", "Non-Caucasian"}
    german = load_dataset("german", seed=3)
    assert german.n_rows == 1000 and german.y.mean() == pytest.approx(0.7)
    assert set(german.groups["sex"]) == {"female", "male"}
    again = load_dataset("german", seed=3)
    other = load_dataset("german", seed=4)
    assert np.array_equal(german.test_idx, again.test_idx)
    assert not np.array_equal(german.test_idx, other.test_idx)
    assert len(np.intersect1d(german.train_idx, german.test_idx)) == 0


def test_unknown_dataset_and_option():
    with pytest.raises(TrustlabError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(TrustlabError, match=r"^options.colour: unknown parameter"):
        load_dataset("german", colour=1)


def test_cache_dir_copy_is_used_and_verified(tmp_path):
    spec = tabular.FILES["german"]
    bundled = sources.package_file(spec)
    target = tmp_path / "german" / "german.data"
    target.parent.mkdir()
    shutil.copy(bundled, target)
    ds = load_dataset("german", data_dir=tmp_path)
    assert ds.source == str(target)
    target.write_text("corrupted\n")
    with pytest.raises(TrustlabError, match="does not match"):
        load_dataset("german", data_dir=tmp_path)


def test_download_into_cache_is_checksum_verified(tmp_path, monkeypatch):
    """The online path: no bundled copy, fetch from the URL (here a file:// URL) into the cache."""
    spec = tabular.FILES["german"]
    bundled = sources.package_file(spec)
    monkeypatch.setattr(sources, "package_file", lambda s: None)
    monkeypatch.setitem(tabular.FILES, "german", sources.RemoteFile(
        spec.dataset, spec.filename, spec.sha256, None, bundled.as_uri()))
    ds = load_dataset("german", data_dir=tmp_path / "cache")
    assert ds.n_rows == 1000
    assert (tmp_path / "cache" / "german" / "german.data").is_file()
    # a download whose bytes do not match is rejected and not kept
    bad = tmp_path / "bad.data"
    bad.write_text("A11 6\n")
    monkeypatch.setitem(tabular.FILES, "german", sources.RemoteFile(
        spec.dataset, spec.filename, spec.sha256, None, bad.as_uri()))
    with pytest.raises(TrustlabError, match="does not match"):
        load_dataset("german", data_dir=tmp_path / "cache2")
    assert not (tmp_path / "cache2" / "german" / "german.data").exists()


def test_missing_everywhere_says_where_to_put_it(monkeypatch):
    monkeypatch.setattr(sources, "package_file", lambda s: None)
    monkeypatch.delenv("TRUSTLAB_DATA", raising=False)
    with pytest.raises(DatasetNotFound, match="TRUSTLAB_DATA"):
        load_dataset("adult")


def test_run_data_dir_option_reaches_the_loader(tmp_path, capsys, monkeypatch):
    """`trustlab run --data-dir` is where the loaders look first (a corrupt copy there is
    refused by its checksum, which proves it was read)."""
    from trustlab.cli import main

    # recorded so that teardown restores the variable main() is about to overwrite
    monkeypatch.setenv("TRUSTLAB_DATA", str(tmp_path / "unused"))
    (tmp_path / "data" / "german").mkdir(parents=True)
    (tmp_path / "data" / "german" / "german.data").write_text("corrupted\n")
    exp = tmp_path / "g.yaml"
    exp.write_text("name: g\ndataset: {name: german, sensitive: sex, privileged: male}\n"
                   "model: {name: logistic_regression}\n")
    code = main(["run", str(exp), "--out", str(tmp_path / "out"),
                 "--data-dir", str(tmp_path / "data")])
    assert code == 2 and "does not match" in capsys.readouterr().err


# -- the dataset registry ------------------------------------------------------------------
def test_dataset_options_are_the_loaders_signature_and_bad_values_are_one_line():
    """Every dataset's ``Params`` is derived from its loader's keyword arguments; a bad
    value is a one-line ParamError naming ``options.<option>``."""
    import inspect

    from trustlab.data import DATASETS, get_spec
    from trustlab.data.registry import check_options
    from trustlab.registry import ParamError, get_registry

    assert get_registry("datasets") is DATASETS
    assert {"adult", "compas", "german", "mnist", "colored_mnist"} <= set(DATASETS)
    for name in DATASETS:
        spec = get_spec(name)
        loader_args = [p for p in inspect.signature(spec.loader).parameters
                       if p not in ("data_dir", "seed")]
        assert list(spec.Params.model_fields) == loader_args, name
        check_options(spec, {})  # the loader's defaults are valid
        for option in spec.Params.model_fields:
            with pytest.raises(ParamError) as info:
                check_options(spec, {option: [[]]})
            assert info.value.key == f"options.{option}"
            assert str(info.value).startswith(f"options.{option}: ")
            assert len(str(info.value).splitlines()) == 1
        with pytest.raises(ParamError, match=r"^options.colour: unknown parameter"):
            check_options(spec, {"colour": 1})
    # types are checked too, strictly (the loader receives the value as written)
    with pytest.raises(ParamError, match=r"^options.test_size: .*valid number"):
        check_options(get_spec("german"), {"test_size": "0.3"})
    check_options(get_spec("german"), {"test_size": 0.5})


def test_a_registered_dataset_is_listed_and_loadable():
    from trustlab.data import DATASETS, Dataset, dataset_table
    from trustlab.data.registry import DatasetSpec, register_dataset

    def load_toy(data_dir=None, seed: int = 0, rows: int = 4):
        import pandas as pd

        X = pd.DataFrame({"x": np.arange(rows, dtype=float)})
        groups = pd.DataFrame({"g": ["a", "b"] * (rows // 2)})
        return Dataset(name="toy", X=X, y=np.arange(rows) % 2, groups=groups,
                       train_idx=np.arange(rows // 2), test_idx=np.arange(rows // 2, rows),
                       class_names=["0", "1"])

    spec = register_dataset(DatasetSpec("toy_rows", load_toy, lambda d: "memory", "a toy",
                                        4, ("g",), "tabular", "nowhere"))
    try:
        assert "toy_rows" in [r["name"] for r in dataset_table()]
        assert list(spec.Params.model_fields) == ["rows"]
        assert load_dataset("toy_rows", rows=6).n_rows == 6
        with pytest.raises(TrustlabError, match="options.rows"):
            load_dataset("toy_rows", rows="six")
        with pytest.raises(TrustlabError, match="already registered"):
            register_dataset(DatasetSpec("toy_rows", load_toy, lambda d: None, "again", 4,
                                         ("g",), "tabular", "nowhere"))
    finally:
        DATASETS.unregister("toy_rows")
    assert "toy_rows" not in DATASETS
