"""Run (or resume) an experiment: plan -> skip finished trials -> execute -> store."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from trustlab.errors import TrustlabError
from trustlab.experiments.config import Experiment, Trial
from trustlab.experiments.executors import TrialPayload, TrialResult, make_executor, versions
from trustlab.experiments.lock import RunLock
from trustlab.experiments.store import DB_NAME, Store


@dataclass
class RunSummary:
    out_dir: Path
    n_planned: int
    n_skipped: int
    n_ok: int = 0
    n_failed: int = 0
    wall_s: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (trial id, error)

    @property
    def ok(self) -> bool:
        return self.n_failed == 0

    def failure_line(self) -> str:
        tid, err = self.failures[0]
        return (f"{self.n_failed} of {self.n_planned} trials failed (first: {tid}: {err}); "
                f"see `trustlab results {self.out_dir}`")


def default_out_dir(exp: Experiment) -> Path:
    return Path("runs") / exp.name


def _check_same_experiment(store: Store, exp: Experiment) -> None:
    name = store.meta().get("name")
    if name is not None and name != exp.name:
        raise TrustlabError(f"{store.directory} holds experiment {name!r}, not {exp.name!r}; "
                            "choose another --out")


def run_experiment(exp: Experiment, out_dir: str | Path | None = None, *,
                   executor: str = "local", workers: int = 1, scheduler: str | None = None,
                   progress: bool = True, console=None, command: str | None = None
                   ) -> RunSummary:
    """Run the trials of ``exp`` not already ``ok`` in ``out_dir``'s store.

    ``command`` (the command line, when run from the CLI) is kept with the run's record.

    Each finished trial is written at once, in its own transaction, with its artifacts in
    ``out_dir/trials/<id>/``. A failing trial is recorded as failed and the others go on.
    """
    from rich.console import Console

    console = console or Console(stderr=True)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(exp)
    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise TrustlabError(f"--out {out_dir} is a file, not a directory")
        has_store = (out_dir / DB_NAME).exists()
    except OSError as exc:  # e.g. a parent we may not look into
        raise TrustlabError(f"cannot use --out {out_dir}: {exc.strerror or exc}") from None
    if has_store:  # read-only: refuse another experiment's store before connecting
        with Store(out_dir) as existing:
            _check_same_experiment(existing, exp)
    ex = make_executor(executor, workers=workers, scheduler=scheduler,
                       slurm=exp.engine.executor.slurm,
                       log_directory=str(out_dir.resolve() / "slurm-logs"))
    # Order matters: connect (or start) the executor, then lock, then create the store,
    # so a scheduler that cannot be reached leaves nothing behind.
    with ex, RunLock(_make_out_dir(out_dir)):
        with Store(out_dir, create=True) as store:
            _check_same_experiment(store, exp)  # again, now that we hold the lock
            return _run(exp, store, ex, executor=executor, workers=workers,
                        progress=progress, console=console, command=command)


def _make_out_dir(out_dir: Path) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TrustlabError(f"--out {out_dir}: a file is in the way") from None
    except OSError as exc:
        raise TrustlabError(f"cannot create output directory {out_dir}: "
                            f"{exc.strerror or exc}") from None
    return out_dir


def _run(exp: Experiment, store: Store, ex, *, executor: str, workers: int, progress: bool,
         console, command: str | None) -> RunSummary:
    out_dir = store.directory
    _remove_stale_temporaries(out_dir)
    done = store.ok_ids()
    todo = [t for t in exp.trials if t.trial_id not in done]
    summary = RunSummary(out_dir, len(exp.trials), len(exp.trials) - len(todo))
    store.save_experiment({
        "name": exp.name, "kind": exp.kind, "grid_keys": exp.grid_keys,
        "seeds": exp.engine.seeds, "source_yaml": exp.source_text,
        "resolved_yaml": yaml.safe_dump(exp.raw, sort_keys=False),
        "overrides": exp.overrides, "report": exp.engine.report.model_dump(),
        "plan": [t.trial_id for t in exp.trials],
    })
    # the executor as set up (e.g. "slurm, 2 job(s) x 4 core(s), 8GB, walltime 01:00:00")
    run_id = store.start_run(executor=ex.describe() if executor != "local" else executor,
                             workers=workers,
                             n_planned=len(exp.trials), n_skipped=summary.n_skipped,
                             versions=versions(), overrides=exp.overrides, command=command)
    t0 = time.perf_counter()
    by_id = {t.trial_id: t for t in todo}
    from trustlab.registry import registrations

    plugins = registrations()
    payloads = [TrialPayload(t.trial_id, exp.kind, t.config, t.seed, registrations=plugins)
                for t in todo]
    with _Progress(console, len(exp.trials), summary.n_skipped, progress,
                   ex.describe() if todo else "nothing to run") as bar:
        for result in ex.run(payloads):
            trial = by_id[result.trial_id]
            _write_artifacts(out_dir, result)
            store.record(trial, result, run_id)
            if result.status == "ok":
                summary.n_ok += 1
            else:
                summary.n_failed += 1
                summary.failures.append((trial.trial_id, result.error or "failed"))
            bar.advance(trial, result)
    summary.wall_s = time.perf_counter() - t0
    store.finish_run(run_id, n_ok=summary.n_ok, n_failed=summary.n_failed,
                     wall_s=summary.wall_s)
    return summary


def _write_artifacts(out_dir: Path, result: TrialResult) -> None:
    """Each artifact through a temporary file renamed into place. A failure (a full disk)
    removes the temporary file and stops the run with one line; the trial's row is not
    written yet, so the trial is not counted as done and the next run redoes it."""
    if not result.artifacts:
        return
    d = out_dir / "trials" / result.trial_id
    for name, data in result.artifacts.items():
        safe = Path(name).name  # a kind cannot write outside its trial directory
        tmp = d / f".{safe}.tmp"
        try:
            d.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            tmp.replace(d / safe)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise TrustlabError(
                f"cannot write artifact {safe} of trial {result.trial_id} in {d}: "
                f"{exc.strerror or exc}; the trial is not counted as done: fix this and "
                "run again to resume") from None


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Temporary artifact files left by a run that was killed or ran out of space."""
    for tmp in (out_dir / "trials").glob("*/.*.tmp"):
        tmp.unlink(missing_ok=True)


def _flat_items(key: str, value):
    # A grid axis over a whole block shows as its leaves: mitigation.name=massaging
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _flat_items(f"{key}.{k}", v)
    elif not (isinstance(value, dict) and not value):
        yield key, value


def _label(trial: Trial) -> str:
    point = ", ".join(f"{k}={v}" for key, value in trial.point.items()
                      for k, v in _flat_items(key, value))
    return f"{point + ' ' if point else ''}seed={trial.seed}"


class _Progress:
    """A rich progress bar (done/total, ETA) on a terminal; one plain line per trial when
    the output is a log file, so nothing animates there."""

    def __init__(self, console, total: int, skipped: int, enabled: bool, what: str) -> None:
        self.console, self.total, self.done = console, total, skipped
        self.enabled, self.what = enabled, what
        self.bar = None

    def __enter__(self) -> "_Progress":
        if not self.enabled:
            return self
        if self.done:
            self.console.print(f"resuming: {self.done} of {self.total} trials already done",
                               soft_wrap=True)
        if self.console.is_terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("trials"),
                                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                console=self.console, transient=False)
            self.bar.start()
            self.task = self.bar.add_task(self.what, total=self.total, completed=self.done)
        else:
            self.console.print(f"running {self.total - self.done} trial(s) on {self.what}",
                               soft_wrap=True, highlight=False)
        return self

    def advance(self, trial: Trial, result: TrialResult) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.advance(self.task)
            if result.status != "ok":
                from rich.markup import escape

                self.bar.console.print(f"[red]failed[/red] {trial.trial_id} "
                                       f"{escape(_label(trial))}: {escape(result.error or '')}")
        else:
            # One line per trial, never wrapped at the console width (grep-able logs).
            status = "ok" if result.status == "ok" else f"FAILED: {result.error}"
            self.console.print(f"[{self.done}/{self.total}] {trial.trial_id} {_label(trial)} "
                               f"({result.duration_s or 0:.1f}s) {status}", highlight=False,
                               markup=False, soft_wrap=True)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def print_summary(out_dir: Path, console=None) -> None:
    """The end-of-run table: mean ± std over seeds per grid point."""
    from trustlab.experiments.results import load_results, summary_table, table_console

    console = console or table_console()
    results = load_results(out_dir)
    console.print(summary_table(results))


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, file=sys.stderr)
