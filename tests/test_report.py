"""`trustlab report DIR`: a self-contained HTML file with embedded PNG plots."""

from __future__ import annotations

import base64
import html
import io
import re
import shutil
import subprocess
import textwrap

import pytest

from conftest import assert_fits_in_chromium, section_titles
from trustlab.cli import main

EXPERIMENT = """
name: report-test
dataset: {name: german, sensitive: sex, privileged: male, subsample: 0.6}
model: {name: logistic_regression}
seeds: [0, 1]
grid:
  model.name: [logistic_regression, xgboost]
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    path = tmp / "exp.yaml"
    path.write_text(textwrap.dedent(EXPERIMENT))
    out = tmp / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    return out


def images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in
            re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_is_self_contained_with_plots_table_metadata(run_dir, capsys):
    from PIL import Image

    assert main(["report", str(run_dir)]) == 0
    path = run_dir / "report.html"
    assert capsys.readouterr().out.strip() == str(path)
    page = path.read_text()
    # nothing fetched from elsewhere: no external scripts, styles or images
    assert not re.search(r'(src|href)="(https?:|//)', page)
    pngs = images(page)
    assert len(pngs) >= 2  # the scatter and the per-group rates
    for png in pngs:
        im = Image.open(io.BytesIO(png))
        assert im.format == "PNG" and im.size[0] > 300
    assert "Accuracy vs fairness (accuracy vs |statistical_parity_difference|)" in page
    assert "Comparison (mean ± 95% CI over seeds)" in page and "Per-group rates" in page
    # the study's answer first: findings, then the tabular kind's own figure, the frontier
    titles = section_titles(page)
    assert titles[0] == "Findings" and titles[1].startswith("Accuracy vs fairness")
    assert "Best with |statistical_parity_difference|" in page or "No grid point reaches" in page
    # the comparison table shows each grid point's seed mean, as `results` computes it
    from trustlab.experiments.results import fmt_mean_std, load_results
    from trustlab.report.html import ci_half_width

    summary = load_results(run_dir).summary(["accuracy"])
    for _, row in summary.iterrows():
        half = ci_half_width(row["accuracy_std"], int(row["n_ok"]))
        assert html.escape(fmt_mean_std(row["accuracy_mean"], half)) in page
    assert "scikit-learn" in page and "Run metadata" in page and "report-test" in page
    # every embedded plot is also exported as a PNG file, byte for byte
    exported = sorted((run_dir / "figures").glob("*.png"))
    assert [p.read_bytes() for p in exported] == pngs
    assert exported[0].name.startswith("01-accuracy-vs-")


def test_report_x_metric_option_and_errors(run_dir, capsys, tmp_path):
    assert main(["report", str(run_dir), "--x-metric", "equalized_odds_difference"]) == 0
    page = (run_dir / "report.html").read_text()
    assert "accuracy vs |equalized_odds_difference|" in page
    assert main(["report", str(run_dir), "--x-metric", "nonsense"]) == 2
    assert "metric 'nonsense' is not in the results" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "empty")]) == 2


def _chromium():
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    from PIL import Image

    assert main(["report", str(run_dir)]) == 0
    shot = tmp_path / "shot.png"
    subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=1200,2000",
         (run_dir / "report.html").resolve().as_uri()],
        check=True, capture_output=True, timeout=120)
    assert shot.is_file()
    im = Image.open(shot).convert("RGB")
    assert im.size == (1200, 2000)
    # a blank page has one or two colours; rendered plots (anti-aliased markers, bars,
    # text) have many
    colours = im.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200
    # the plots' coloured markers and bars are on screen (text is grey, links a thin blue)
    import numpy as np

    px = np.asarray(im).astype(int)
    saturated = int(((px.max(axis=2) - px.min(axis=2)) > 60).sum())
    assert saturated > 20_000


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed")
@pytest.mark.parametrize("width", [1400, 700])
def test_report_fits_the_page_at_1400_and_700_px(run_dir, tmp_path, width):
    """Nothing makes the page scroll sideways: wide tables scroll inside their own box,
    figures shrink to the column."""
    assert main(["report", str(run_dir)]) == 0
    page = (run_dir / "report.html").read_text()
    assert_fits_in_chromium(run_dir / "report.html", width, tmp_path)
    # the run metadata names the command line that made the run
    assert "Command lines" in page and "trustlab run" in page
