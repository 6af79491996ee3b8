"""Write examples/adult_xgboost_predictions.csv.gz: a real model's test-set predictions.

XGBoost (defaults) trained on UCI Adult's official training split without the `sex`
column; one row per official test row with the label, the prediction, P(>50K) and the
group columns. This is the file the README's `trustlab audit` example reads.

    .venv/bin/python examples/make_adult_predictions.py
"""

from pathlib import Path

import pandas as pd

from trustlab.data import load_dataset
from trustlab.training.tabular_models import encode_features, make_model


def main() -> None:
    ds = load_dataset("adult")
    X_train, X_test, _ = encode_features(ds.X_train.drop(columns=["sex"]),
                                         ds.X_test.drop(columns=["sex"]))
    model = make_model("xgboost", seed=0).fit(X_train, ds.y_train)
    frame = pd.DataFrame({
        "income": ds.y_test,
        "pred": model.predict(X_test),
        "score": model.predict_proba(X_test)[:, 1].round(6),
    })
    frame = pd.concat([frame, ds.groups_test[["sex", "race", "age"]]], axis=1)
    out = Path(__file__).with_name("adult_xgboost_predictions.csv.gz")
    frame.to_csv(out, index=False)
    print(f"wrote {out} ({len(frame):,} rows)")


if __name__ == "__main__":
    main()
