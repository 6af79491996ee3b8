"""Build ``DIR/report.html`` from the results store alone."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path

from trustlab.errors import TrustlabError
from trustlab.experiments.results import (Results, fmt_cell, fmt_mean_std, load_results,
                                          summary_metrics)
from trustlab.report import ReportContext, Section
from trustlab.report.kinds import fairness_axis_for, sections_for
from trustlab.report.plots import ci_half_width

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; color: #222; padding: 0 1em; }
h1 { border-bottom: 3px solid #3465a4; padding-bottom: .2em; }
h2 { color: #3465a4; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 13px; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
td { white-space: nowrap; } .scroll { overflow-x: auto; }
th { background: #eef2f8; } td.key, th.key { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
img.plot { max-width: 100%; border: 1px solid #ddd; margin: .5em 0; display: block; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: 12px; }
.bad { color: #a40000; } .muted { color: #777; font-size: 12px; }
ul.findings { background: #f3f7ee; border-left: 4px solid #4e9a06; padding: .6em 1em .6em 2em; }
ul.findings li { margin: .3em 0; }
.cards span { display: inline-block; background: #eef2f8; padding: .4em .8em; margin: 0 .4em .4em 0;
              border-radius: 4px; }
"""


def _esc(v) -> str:
    return html.escape("" if v is None else str(v))


def _table(header: list[str], rows: list[list], key_cols: int = 0) -> str:
    head = "".join(f'<th class="{"key" if i < key_cols else ""}">{_esc(h)}</th>'
                   for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"key" if i < key_cols else ""}">{_esc(c)}</td>'
                         for i, c in enumerate(r)) + "</tr>" for r in rows)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


COLLAPSE_ROWS = 15


def default_x_metric(results: Results) -> str | None:
    names = set(results.metric_names())
    return next((m for m in fairness_axis_for(results.kind) if m in names), None)


# -- built-in sections ---------------------------------------------------------------------
def scatter_section(results: Results, ctx: ReportContext) -> Section | None:
    from trustlab.report.plots import png_img, scatter_with_errorbars

    x, y = ctx.x_metric, ctx.y_metric
    frame = results.frame()
    if frame.empty or x is None or x not in frame or y not in frame:
        return None
    ok = frame[frame["status"] == "ok"].copy()
    if ok.empty:
        return None
    xlabel = f"|{x}|" if ctx.absolute_x else x
    ok["_x"] = ok[x].abs() if ctx.absolute_x else ok[x]
    keys = results.grid_keys
    grouped = ok.groupby(keys, sort=False, dropna=False) if keys else ok.assign(_a=0).groupby("_a")
    points = grouped.agg(_x_mean=("_x", "mean"), _x_std=("_x", "std"),
                         _y_mean=(y, "mean"), _y_std=(y, "std"), n=(y, "size")).reset_index()
    points = points.rename(columns={"_x_mean": "x_mean", "_x_std": "x_std",
                                    "_y_mean": "y_mean", "_y_std": "y_std"})
    fig = scatter_with_errorbars(points, keys, "x", "y", f"{xlabel} (lower is fairer)", y,
                                 f"{results.name}: {y} vs {xlabel}")
    note = ("<p>One point per grid point at the mean over seeds; error bars are the "
            "standard deviation over seeds (none with a single seed). The black line is "
            "the Pareto front: the ringed grid points, which no other point beats on both "
            "axes.</p>")
    if ctx.absolute_x:
        note += (f"<p>x is the mean over seeds of each trial's |{_esc(x)}|, which can exceed "
                 f"the absolute value of the signed mean in the table when the sign changes "
                 f"from seed to seed.</p>")
    title = f"{y} vs {xlabel}"
    return Section(f"Accuracy vs fairness ({title})", note + png_img(fig, title))


def comparison_section(results: Results, ctx: ReportContext) -> Section | None:
    metrics = summary_metrics(results)
    for extra in (ctx.x_metric, ctx.y_metric):
        if extra and extra not in metrics and extra in results.metric_names():
            metrics.insert(0, extra)
    summary = results.summary(metrics)
    if summary.empty:
        return None
    keys = results.grid_keys
    key_metric = next((m for m in metrics if f"{m}_mean" in summary), None)
    if key_metric is not None:  # sorted by the study's key metric, best first
        summary = summary.sort_values(f"{key_metric}_mean", ascending=False,
                                      na_position="last", kind="stable")
    rows = []
    for _, r in summary.iterrows():
        n = int(r["n_ok"])
        rows.append([fmt_cell(r[k]) for k in keys] + [f"{n}/{int(r['n_trials'])}"]
                    + [fmt_mean_std(r.get(f"{m}_mean"), ci_half_width(r.get(f"{m}_std"), n))
                       for m in metrics])
    table = _table(keys + ["ok/n"] + metrics, rows, key_cols=len(keys))
    order = f"<p class=\"muted\">Sorted by {_esc(key_metric)}, highest first.</p>" \
        if key_metric else ""
    if len(rows) > COLLAPSE_ROWS:  # a long table folds away
        table = (f"<details open><summary>{len(rows)} grid points (click to fold)</summary>"
                 f"{table}</details>")
    return Section("Comparison (mean ± 95% CI over seeds)", order + table)


def failures_section(results: Results, ctx: ReportContext) -> Section | None:
    failed = results.failed()
    if not failed:
        return None
    keys = results.grid_keys
    rows = [[t["trial_id"]] + [t["params"].get(k) for k in keys] + [t["seed"], t["error"]]
            for t in failed]
    return Section(f"Failed trials ({len(failed)})",
                   _table(["trial"] + keys + ["seed", "error"], rows, key_cols=len(keys) + 1))


def metadata_section(results: Results, ctx: ReportContext) -> Section:
    trials = results.trials
    durations = [t["duration_s"] for t in trials if t["duration_s"] is not None]
    cards = {
        "kind": results.kind,
        "trials": len(trials),
        "ok": len(results.ok()),
        "failed": len(results.failed()),
        "seeds": ", ".join(map(str, results.meta.get("seeds", []))),
        "trial time (sum)": f"{sum(durations):.1f} s",
    }
    if results.hidden:
        cards["not shown"] = f"{results.hidden} trial(s) of earlier configurations"
    out = ['<div class="cards">' + "".join(f"<span><b>{_esc(k)}</b>: {_esc(v)}</span>"
                                          for k, v in cards.items()) + "</div>"]
    run_rows = [[r["run_id"], r["started_at"], r["finished_at"] or "(interrupted)",
                 r["executor"], r["workers"], r["n_planned"], r["n_skipped"],
                 r["n_ok"] if r["n_ok"] is not None else "-",
                 r["n_failed"] if r["n_failed"] is not None else "-",
                 f"{r['wall_s']:.1f}" if r["wall_s"] is not None else "-"]
                for r in results.runs]
    out.append("<h3>Runs</h3>" + _table(
        ["run", "started (UTC)", "finished", "executor", "workers", "planned", "skipped",
         "ok", "failed", "wall s"], run_rows))
    commands = [f"run {r['run_id']}: {r['command']}" for r in results.runs if r.get("command")]
    if commands:
        out.append("<h3>Command lines</h3><p class=\"muted\">What started each run, every "
                   "<code>--set</code> override included.</p><pre>"
                   + _esc("\n".join(commands)) + "</pre>")
    versions = results.runs[-1]["versions"] if results.runs else {}
    if versions:
        out.append("<h3>Versions</h3>" + _table(list(versions), [list(versions.values())]))
    src = results.meta.get("resolved_yaml") or results.meta.get("source_yaml")
    if src:
        overrides = results.meta.get("overrides") or []
        ov = (f"<p>with overrides: <code>{_esc(' '.join(overrides))}</code></p>"
              if overrides else "")
        out.append(f"<h3>Experiment</h3>{ov}<pre>{_esc(src)}</pre>")
    return Section("Run metadata", "\n".join(out))


BUILTIN_AFTER = [failures_section, metadata_section]
# Kinds whose own answer is the accuracy-vs-fairness frontier: the scatter leads there.
SCATTER_FIRST = {"tabular"}


def section_order(kind: str) -> list:
    """Findings first, then the study's own figures, then the generic scatter (where a
    fairness axis exists) and the comparison table, then failures and run metadata."""
    from trustlab.report.findings import findings_section

    own = sections_for(kind)
    if kind in SCATTER_FIRST:
        return [findings_section, scatter_section, *own, comparison_section, *BUILTIN_AFTER]
    return [findings_section, *own, scatter_section, comparison_section, *BUILTIN_AFTER]


def _load_plugin_kind(kind: str) -> None:
    """A plugin kind registers its report sections when its module is imported."""
    from trustlab.report.kinds import SECTIONS

    if kind in SECTIONS:
        return
    from trustlab.registry import get_registry

    try:
        get_registry("kinds").get(kind)
    except TrustlabError:
        pass  # the kind is gone: the built-in sections still show its results


def build_html(results: Results, ctx: ReportContext) -> str:
    _load_plugin_kind(results.kind)
    sections: list[Section] = []
    for fn in section_order(results.kind):
        sec = fn(results, ctx)
        if sec is not None:
            sections.append(sec)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    toc = "".join(f'<li><a href="#s{i}">{_esc(s.title)}</a></li>'
                  for i, s in enumerate(sections))
    body = "\n".join(f'<h2 id="s{i}">{_esc(s.title)}</h2>\n{s.html}'
                     for i, s in enumerate(sections))
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>trustlab report: {_esc(results.name)}</title><style>{CSS}</style>"
            f"</head><body><h1>trustlab report: {_esc(results.name)}</h1>"
            f"<p class=\"muted\">written {now} from {_esc(results.directory.resolve())}</p>"
            f"<ul>{toc}</ul>{body}</body></html>\n")


def write_report(directory: str | Path, *, x_metric: str | None = None,
                 all_trials: bool = False) -> Path:
    directory = Path(directory)
    results = load_results(directory, all_trials=all_trials)
    _load_plugin_kind(results.kind)
    if not results.trials:
        raise TrustlabError(f"no trials in {directory} yet; nothing to report")
    cfg = results.meta.get("report") or {}
    x = x_metric or cfg.get("x_metric") or default_x_metric(results)
    names = results.metric_names()
    if x is not None and names and x not in names:
        raise TrustlabError(f"metric {x!r} is not in the results; available: "
                            f"{', '.join(m for m in names if '.' not in m)}")
    ctx = ReportContext(x_metric=x, y_metric=cfg.get("y_metric") or "accuracy",
                        absolute_x=cfg.get("absolute_x", True))
    out = directory / "report.html"
    tmp = directory / ".report.html.tmp"
    page = build_html(results, ctx)
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(out)
        _export_figures(page, directory / "figures")
    except OSError as exc:  # e.g. a read-only results directory
        raise TrustlabError(f"cannot write the report in {directory}: "
                            f"{exc.strerror or exc}") from None
    return out


def _export_figures(page: str, folder: Path) -> None:
    """Every embedded plot also as a PNG file (for papers and READMEs), named by its alt."""
    import base64
    import re

    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    pattern = re.compile(r'<img class="plot" alt="([^"]*)" src="data:image/png;base64,([^"]+)"')
    for i, (alt, data) in enumerate(pattern.findall(page), start=1):
        slug = re.sub(r"[^a-z0-9]+", "-", alt.lower()).strip("-") or "plot"
        (folder / f"{i:02d}-{slug}.png").write_bytes(base64.b64decode(data))

