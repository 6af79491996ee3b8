"""Shared fixtures: real Adult predictions for oracle tests (trained once per session)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

# Test-only trial kinds register through the plugin mechanism, in this process and in every
# `trustlab run` subprocess and worker the tests start (they inherit the environment).
# The tests folder goes on PYTHONPATH so that subprocesses can import that module too.
os.environ["TRUSTLAB_PLUGINS"] = "test_experiments_helpers"
_TESTS = os.path.dirname(os.path.abspath(__file__))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_TESTS, os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture(scope="session")
def adult_predictions() -> pd.DataFrame:
    """Logistic regression on real Adult (official split): test labels, predictions, groups."""
    from trustlab.data import load_dataset
    from trustlab.training.tabular_models import encode_features, make_model

    ds = load_dataset("adult")
    drop = ["sex"]
    X_train, X_test, _ = encode_features(ds.X_train.drop(columns=drop),
                                         ds.X_test.drop(columns=drop))
    model = make_model("logistic_regression", seed=0).fit(X_train, ds.y_train)
    frame = ds.groups_test.copy()
    frame["label"] = ds.y_test
    frame["pred"] = model.predict(X_test)
    frame["score"] = model.predict_proba(X_test)[:, 1]
    return frame


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def section_titles(page: str) -> list[str]:
    """The report's section titles, in order (its <h2 id="sN"> headings)."""
    import html
    import re

    return [html.unescape(t) for t in re.findall(r'<h2 id="s\d+">([^<]*)</h2>', page)]


LAYOUT_PROBE = """<script>
document.addEventListener('DOMContentLoaded', () => {
  const w = window.innerWidth;
  const scrolls = (e) => { for (let p = e.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll') return true; }
    return false; };
  const out = [...document.querySelectorAll('table, img, pre, h2, p')]
    .filter(e => e.getBoundingClientRect().right > w + 1 && !scrolls(e))
    .map(e => e.tagName);
  document.body.setAttribute('data-layout',
    (document.documentElement.scrollWidth - w) + '|' + out.join(','));
});
</script></body>"""


def chromium_path():
    import shutil

    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def assert_fits_in_chromium(report, width: int, tmp_path) -> None:
    """In headless Chromium at ``width`` px, nothing makes the page scroll sideways: an
    element wider than the window must sit in a scrolling box. Skipped without Chromium."""
    import re
    import subprocess
    from pathlib import Path

    browser = chromium_path()
    if browser is None:
        return
    page = Path(report).read_text()
    probe = Path(tmp_path) / f"probe-{width}.html"
    probe.write_text(page.replace("</body>", LAYOUT_PROBE, 1))
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={Path(tmp_path) / 'profile'}", f"--window-size={width},1200",
           "--dump-dom", probe.as_uri()]
    dom = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout
    overflow, outside = re.search(r'data-layout="(-?\d+)\|([^"]*)"', dom).groups()
    assert int(overflow) <= 0 and outside == "", (width, overflow, outside)
