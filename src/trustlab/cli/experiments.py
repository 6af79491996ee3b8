"""CLI commands: `trustlab run`, `results`, `report`, `demo`."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from trustlab.cli import FORMAT_HELP, OutputFormat, command
from trustlab.errors import TrustlabError


class Executor(str, Enum):
    local = "local"
    dask = "dask"
    slurm = "slurm"




def _run(path: Path, *, out: Optional[Path], executor: Optional[str], workers: int,
         scheduler: Optional[str], overrides: list[str], report: bool = False,
         slurm_flags: dict | None = None) -> Path:
    from rich.console import Console

    from trustlab.cli import command_line
    from trustlab.experiments.config import load_experiment
    from trustlab.experiments.runner import print_summary, run_experiment

    exp = load_experiment(path, overrides)
    err = Console(stderr=True)
    executor = _choose_executor(exp, executor, scheduler, slurm_flags or {})
    summary = run_experiment(exp, out, executor=executor, workers=workers,
                             scheduler=scheduler, console=err, command=command_line())
    print_summary(summary.out_dir)
    if report:
        from trustlab.report import write_report

        path = write_report(summary.out_dir)
        print(f"report: {path}")
    err.print(f"{summary.n_ok} ok, {summary.n_failed} failed, {summary.n_skipped} skipped "
              f"(already done) in {summary.wall_s:.1f}s -> {summary.out_dir}", highlight=False,
              soft_wrap=True)
    if not summary.ok:
        print(f"trustlab: error: {summary.failure_line()}", file=sys.stderr)
        sys.exit(1)
    return summary.out_dir


def _choose_executor(exp, executor: Optional[str], scheduler: Optional[str],
                     slurm_flags: dict) -> str:
    """The executor to use: as given; else slurm when the experiment has an
    ``executor.slurm`` block (and no --scheduler), else local. Slurm flags override the
    block's resources; a block that --executor local leaves unused is said in one line."""
    from trustlab.experiments.config import SlurmConfig

    block = exp.engine.executor.slurm
    if executor is None:
        executor = "slurm" if block is not None and not scheduler else (
            "dask" if scheduler else "local")
    flags = {k: v for k, v in slurm_flags.items() if v is not None}
    if flags:
        if executor not in ("slurm", "dask") or scheduler:
            raise TrustlabError(f"--{next(iter(flags))} sets a Slurm job's resources: it needs "
                                "--executor slurm (or dask with an executor.slurm block)")
        exp.engine.executor.slurm = (block or SlurmConfig()).model_copy(update=flags)
    elif block is not None and executor == "local":
        print("trustlab: note: the experiment's executor.slurm block is not used with "
              "--executor local (use --executor slurm to run on the cluster)", file=sys.stderr)
    return executor


@command("run", examples=[
    "trustlab run experiments/demo.yaml",
    "trustlab run experiments/backdoor_mnist.yaml --set 'seeds=[0, 1]' --out runs/bd-2seeds",
    "trustlab run experiments/income_fairness.yaml --executor slurm --jobs 4 --cores 8 "
    "--queue gpu",
])
def run_cmd(
    experiment: Path = typer.Argument(..., help="Experiment YAML file.", metavar="EXPERIMENT"),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", show_default="runs/<name>",
                                       help="Output directory."),
    executor: Optional[Executor] = typer.Option(
        None, "--executor", show_default="slurm if the experiment has an executor.slurm "
        "block, else local", help="Where trials run: worker processes here, a Dask cluster, "
        "or Slurm jobs (dask-jobqueue)."),
    workers: int = typer.Option(0, "--workers", show_default="one per CPU core",
                                help="Parallel worker processes."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="ADDRESS",
                                            help="Address of a running Dask scheduler."),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", show_default=False,
                                   help="Override a key with a YAML value; repeatable."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", metavar="DIR", show_default="$TRUSTLAB_DATA",
        help="Local data directory."),
    jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="Slurm jobs to start "
                                       "(overrides executor.slurm.jobs).", rich_help_panel="Slurm"),
    cores: Optional[int] = typer.Option(None, "--cores", min=1, help="Cores per Slurm job.",
                                        rich_help_panel="Slurm"),
    memory: Optional[str] = typer.Option(None, "--memory", metavar="SIZE",
                                         help="Memory per Slurm job, e.g. 8GB.",
                                         rich_help_panel="Slurm"),
    walltime: Optional[str] = typer.Option(None, "--walltime", metavar="HH:MM:SS",
                                           help="Wall time of a Slurm job.",
                                           rich_help_panel="Slurm"),
    queue: Optional[str] = typer.Option(None, "--queue", metavar="PARTITION",
                                        help="Slurm partition.", rich_help_panel="Slurm"),
) -> None:
    """Run or resume an experiment sweep; finished trials are skipped."""
    import os

    from trustlab.experiments.executors import cpu_count

    if data_dir is not None:
        if not data_dir.is_dir():
            raise TrustlabError(f"--data-dir {data_dir}: no such directory")
        # Through the environment, so worker processes (local or Dask) see it too.
        os.environ["TRUSTLAB_DATA"] = str(data_dir.resolve())

    _run(experiment, out=out, executor=executor.value if executor else None,
         workers=workers or cpu_count(), scheduler=scheduler, overrides=list(set_),
         slurm_flags={"jobs": jobs, "cores": cores, "memory": memory, "walltime": walltime,
                      "queue": queue})


@command("results", examples=[
    "trustlab results runs/demo",
    "trustlab results runs/demo --format csv > demo.csv",
    "trustlab results runs/demo --salvage runs/demo-rescued",
])
def results_cmd(
    directory: Path = typer.Argument(..., help="An experiment's output directory.",
                                     metavar="DIR"),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help=FORMAT_HELP + " "
                                        "The table is per grid point; JSON and CSV per trial."),
    all_trials: bool = typer.Option(False, "--all", help="Include trials of earlier "
                                    "configurations (e.g. failures since fixed)."),
    salvage_to: Optional[Path] = typer.Option(
        None, "--salvage", metavar="NEW_DIR", help="Copy the readable trials of a damaged "
        "store into a new store in NEW_DIR."),
) -> None:
    """Show the results of an experiment (per trial for csv/json, per grid point as a table)."""
    from trustlab.experiments.results import (hidden_line, load_results, summary_table,
                                              table_console, to_csv, to_json)

    if salvage_to is not None:
        from trustlab.experiments.store import salvage

        print(salvage(directory, salvage_to).line(directory))
        return
    results = load_results(directory, all_trials=all_trials)
    note = hidden_line(results)
    if note:
        print(f"trustlab: {note}", file=sys.stderr)
    if format is OutputFormat.json:
        print(to_json(results))
    elif format is OutputFormat.csv:
        sys.stdout.write(to_csv(results))
    else:
        from rich.markup import escape

        console = table_console()
        console.print(summary_table(results))
        for t in results.failed():
            console.print(f"[red]failed[/red] {t['trial_id']} seed={t['seed']}: "
                          f"{escape(t['error'] or '')}",
                          highlight=False, soft_wrap=True)


@command("report", examples=[
    "trustlab report runs/demo",
    "trustlab report runs/demo --x-metric equalized_odds_difference",
    "trustlab report runs/demo --all",
])
def report_cmd(
    directory: Path = typer.Argument(..., help="An experiment's output directory.",
                                     metavar="DIR"),
    x_metric: Optional[str] = typer.Option(None, "--x-metric", metavar="METRIC",
                                           help="Disparity metric on the scatter's x axis."),
    all_trials: bool = typer.Option(False, "--all", help="Include trials of earlier "
                                    "configurations (e.g. failures since fixed)."),
) -> None:
    """Write DIR/report.html (plots embedded; opens offline)."""
    from trustlab.report import write_report

    print(write_report(directory, x_metric=x_metric, all_trials=all_trials))


@command("demo", examples=[
    "trustlab demo",
    "trustlab demo --out runs/my-demo --workers 1",
])
def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), "--out", metavar="DIR",
                             help="Output directory."),
    workers: int = typer.Option(0, "--workers", show_default="two, or one per CPU "
                                "core if fewer", help="Worker processes."),
) -> None:
    """Run the embedded demo (a real tabular sweep on Adult) and write its report."""
    from importlib.resources import as_file

    from trustlab.experiments import demo_config_path
    from trustlab.experiments.executors import cpu_count

    with as_file(demo_config_path()) as path:
        _run(Path(path), out=out, executor="local", workers=workers or min(2, cpu_count()),
             scheduler=None, overrides=[], report=True)
