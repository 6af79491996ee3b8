"""Where trials run: in-process, local processes, or a Dask cluster.

Every executor runs :func:`execute_trial` on a picklable :class:`TrialPayload` and yields
:class:`TrialResult` objects as trials finish; only the driver touches the store. This
module imports nothing heavy at the top: spawned workers import it first, and the BLAS
thread limits must be in the environment before numpy loads.
"""

from __future__ import annotations

import os
import random
import socket
import sys
import time
import traceback as tb
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

from trustlab.errors import TrustlabError

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
VERSION_PACKAGES = ("trustlab", "numpy", "pandas", "scikit-learn", "xgboost", "fairlearn",
                    "torch")
# How long to wait for a Dask scheduler; a refused connection is retried until then.
CONNECT_TIMEOUT = "5s"
CRASH_MESSAGE = ("worker process died while running this trial "
                 "(killed, out of memory or a crash in native code)")


@dataclass
class TrialPayload:
    trial_id: str
    kind: str
    config: dict[str, Any]
    seed: int
    threads: int = 1
    # Registry entries the driver's code registered (plugins): a spawned or remote worker
    # registers them too before it runs the trial (see trustlab.registry.registrations).
    registrations: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class TrialResult:
    trial_id: str
    status: str  # "ok" | "failed"
    metrics: dict[str, float] | None = None
    artifacts: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    versions: dict[str, str] = field(default_factory=dict)
    worker: str | None = None


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# BLAS/OpenMP/torch threads per trial. Fixed rather than cores // workers: multi-threaded
# reductions and nearest-neighbour ties round differently with the thread count (SMOTE on
# Adult moved accuracy by 0.001 between 1 and 2 threads), and a trial's metrics must not
# depend on how many workers ran the sweep. Parallelism comes from workers instead.
TRIAL_THREADS = 1


def threads_per_worker(workers: int) -> int:
    return TRIAL_THREADS


_VERSIONS: dict[str, str] | None = None


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that can change a metric (no imports needed)."""
    global _VERSIONS
    if _VERSIONS is None:
        from importlib.metadata import PackageNotFoundError, version

        out = {"python": sys.version.split()[0]}
        for pkg in VERSION_PACKAGES:
            try:
                out[pkg] = version(pkg)
            except PackageNotFoundError:
                pass
        _VERSIONS = out
    return dict(_VERSIONS)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy's global RNG and torch (when it is loaded) from the trial seed.

    Kinds that import torch themselves should call this again after the import.
    """
    random.seed(seed)
    import numpy as np

    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _check_reachable(address: str) -> None:
    """Refuse a ``tcp://host:port`` scheduler that does not accept a TCP connection before
    distributed's client starts its event loop thread: a refused or silent port is
    reported in at most CONNECT_TIMEOUT, with the OS's reason. Other schemes (tls://,
    ucx://...) are left to distributed."""
    import socket
    from urllib.parse import urlsplit

    from dask.utils import parse_timedelta

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme != "tcp":
        return
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number: distributed's own message says so
        return
    if not host or port is None:
        return
    with socket.create_connection((host, port), timeout=parse_timedelta(CONNECT_TIMEOUT)):
        pass


def _one_line_text(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:500]


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, TrustlabError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:500]


def execute_trial(payload: TrialPayload) -> TrialResult:
    """Run one trial (in any process). A raising trial returns a failed result."""
    from threadpoolctl import threadpool_limits

    from trustlab.experiments.kinds import TrialContext, TrialOutput, get_kind
    from trustlab.registry import restore_registrations

    started, t0 = _now(), time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        with threadpool_limits(limits=payload.threads):
            torch = sys.modules.get("torch")
            if torch is not None:
                torch.set_num_threads(payload.threads)
            seed_everything(payload.seed)
            restore_registrations(payload.registrations)
            kind = get_kind(payload.kind)
            cfg = kind.config_model.model_validate(payload.config)
            out = kind.run(cfg, payload.seed,
                           TrialContext(trial_id=payload.trial_id, threads=payload.threads))
        if not isinstance(out, TrialOutput):
            out = TrialOutput(metrics=dict(out))
        metrics = {str(k): _number(k, v) for k, v in out.metrics.items()}
        return TrialResult(payload.trial_id, "ok", metrics=metrics,
                           artifacts=dict(out.artifacts), started_at=started,
                           finished_at=_now(), duration_s=time.perf_counter() - t0,
                           versions=versions(), worker=worker)
    except Exception as exc:  # noqa: BLE001 - any error in a trial is that trial's failure
        return TrialResult(payload.trial_id, "failed", error=_one_line(exc),
                           traceback=tb.format_exc(), started_at=started, finished_at=_now(),
                           duration_s=time.perf_counter() - t0, versions=versions(),
                           worker=worker)


def _number(name: Any, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"metric {name!r} is not a number: {value!r}") from None


def failed_result(payload: TrialPayload, message: str) -> TrialResult:
    now = _now()
    return TrialResult(payload.trial_id, "failed", error=message, started_at=now,
                       finished_at=now, versions=versions())


# -- local --------------------------------------------------------------------------------
PARENT_POLL_S = 0.5


def _init_worker(threads: int, parent_pid: int) -> None:
    """Pool initializer: runs in a fresh spawned process before numpy is imported."""
    for var in THREAD_ENV:
        os.environ[var] = str(threads)
    _exit_with_parent(parent_pid)


def _exit_with_parent(parent_pid: int) -> None:
    """Make this worker die with the driver: a SIGKILLed driver cannot shut its pool down,
    and its workers (and the resource tracker they keep open) would live on under init.
    Hand-written: multiprocessing has no option for it. Linux: the kernel sends SIGKILL
    when the parent dies (prctl PR_SET_PDEATHSIG); elsewhere, and as a backstop, a daemon
    thread notices the parent pid change."""
    import signal
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl (e.g. a libc without it): the thread below still works
    if os.getppid() != parent_pid:  # the driver died before the line above ran
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="trustlab-parent-watch", daemon=True).start()


class LocalExecutor:
    """``workers == 1``: in the driver process. Otherwise a spawn-context process pool.

    At most ``workers`` trials are in flight, so when a worker dies (BrokenProcessPool)
    the suspects are known: they are re-run one at a time in a fresh pool, the one that
    breaks it again is marked failed, and the sweep goes on.
    """

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise TrustlabError(f"--workers must be >= 1, got {workers}")
        self.workers = workers
        self.threads = threads_per_worker(workers)

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def describe(self) -> str:
        return f"local, {self.workers} worker(s) x {self.threads} thread(s)"

    def run(self, payloads: Iterable[TrialPayload]) -> Iterator[TrialResult]:
        payloads = list(payloads)
        for p in payloads:
            p.threads = self.threads
        if self.workers == 1:
            for p in payloads:
                yield execute_trial(p)
            return
        yield from self._run_pool(payloads)

    def _pool(self):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"),
                                   initializer=_init_worker,
                                   initargs=(self.threads, os.getpid()))

    def _run_pool(self, payloads: list[TrialPayload]) -> Iterator[TrialResult]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        pending = deque(payloads)
        suspects: deque[TrialPayload] = deque()
        pool = self._pool()
        try:
            while pending or suspects:
                if suspects:  # isolate: one suspect alone in the pool
                    p = suspects.popleft()
                    try:
                        yield pool.submit(execute_trial, p).result()
                    except BrokenProcessPool:
                        yield failed_result(p, CRASH_MESSAGE)
                        pool.shutdown(wait=False, cancel_futures=True)
                        pool = self._pool()
                    continue
                inflight = {}
                broken = False
                while pending or inflight:
                    while pending and len(inflight) < self.workers and not broken:
                        p = pending.popleft()
                        inflight[pool.submit(execute_trial, p)] = p
                    if not inflight:
                        break
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for fut in done:
                        p = inflight.pop(fut)
                        try:
                            yield fut.result()
                        except BrokenProcessPool:
                            suspects.append(p)
                            broken = True
                        except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
                            yield failed_result(p, _one_line(exc))
                    if broken:
                        # The others in flight die with the pool; they are suspects too.
                        for fut in list(inflight):
                            p = inflight.pop(fut)
                            try:
                                yield fut.result()
                            except BrokenProcessPool:
                                suspects.append(p)
                            except Exception as exc:  # noqa: BLE001
                                yield failed_result(p, _one_line(exc))
                        pool.shutdown(wait=False, cancel_futures=True)
                        pool = self._pool()
                        break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


# -- Dask ------------------------------------------------------------------------------------
class DaskExecutor:
    """``dask.distributed``: an existing scheduler (``address``), a Slurm cluster built by
    dask-jobqueue from the experiment's ``executor.slurm`` block, or a LocalCluster."""

    name = "dask"

    def __init__(self, workers: int = 1, address: str | None = None, slurm=None,
                 log_directory: str | None = None) -> None:
        if workers < 1:
            raise TrustlabError(f"--workers must be >= 1, got {workers}")
        self.workers = workers
        self.address = address
        self.slurm = slurm
        self.log_directory = log_directory
        self.watchdog_s = float(getattr(slurm, "watchdog", None) or WATCHDOG_S)
        self.cluster = None
        self.client = None
        self.threads = 1

    def describe(self) -> str:
        if self.address:
            return f"dask, scheduler {self.address}"
        if self.slurm is not None:
            sl = self.slurm
            queue = f", queue {sl.queue}" if sl.queue else ""
            return (f"slurm, {sl.jobs} job(s) x {sl.cores} core(s), {sl.memory}, "
                    f"walltime {sl.walltime}{queue}")
        return f"dask, LocalCluster {self.workers} worker(s) x {self.threads} thread(s)"

    def __enter__(self) -> "DaskExecutor":
        import logging

        import dask
        from dask.distributed import Client, LocalCluster

        try:
            if self.address:
                try:
                    _check_reachable(self.address)
                    self.client = Client(self.address, timeout=CONNECT_TIMEOUT)
                except (OSError, TimeoutError, ValueError, AssertionError) as exc:
                    # ValueError: a malformed address ("missing port number", bad scheme);
                    # AssertionError: distributed asserts that its client IO loop started
                    # within 10 s, which a machine under full load can miss.
                    detail = (_one_line_text(exc)
                              or "the Dask client's event loop did not start in time")
                    raise TrustlabError(f"cannot connect to Dask scheduler {self.address}: "
                                        f"{detail}") from None
            elif self.slurm is not None:
                import shutil

                if shutil.which("sbatch") is None:  # jobs would fail to submit, silently
                    raise TrustlabError("Slurm's sbatch is not on PATH: this machine cannot "
                                        "submit Slurm jobs (run with --executor local, or "
                                        "--executor dask --scheduler ADDRESS)")
                self.cluster = make_slurm_cluster(self.slurm, self.log_directory)
                # adapt, not scale: a job that is cancelled, preempted or reaches its
                # walltime is replaced by a new submission
                self.cluster.adapt(minimum_jobs=self.slurm.jobs, maximum_jobs=self.slurm.jobs)
                self.client = Client(self.cluster)
            else:
                self.threads = threads_per_worker(self.workers)
                env = {var: str(self.threads) for var in THREAD_ENV}
                # A trial that kills its worker is retried once on another worker, then failed.
                with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
                    self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                                processes=True, dashboard_address=None,
                                                silence_logs=logging.ERROR, env=env)
                self.client = Client(self.cluster)
        except BaseException:
            self.__exit__()  # `with` does not call __exit__ when __enter__ raises
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    @staticmethod
    def _result(fut, p: TrialPayload) -> TrialResult:
        try:
            result = fut.result()
        except Exception as exc:  # noqa: BLE001 - KilledWorker, lost connection...
            name = type(exc).__name__
            result = failed_result(p, CRASH_MESSAGE if name == "KilledWorker"
                                   else _one_line(exc))
        fut.release()
        return result

    def run(self, payloads: Iterable[TrialPayload]) -> Iterator[TrialResult]:
        import asyncio
        from concurrent.futures import CancelledError

        from dask.distributed import wait

        futures = {}
        for p in payloads:
            p.threads = self.threads
            fut = self.client.submit(execute_trial, p, pure=False,
                                     key=f"trial-{p.trial_id}-{time.time_ns()}")
            futures[fut] = p
        pending = set(futures)
        idle_since: float | None = None
        while pending:
            try:
                done, pending = wait(pending, timeout=WATCH_INTERVAL_S,
                                     return_when="FIRST_COMPLETED")
            except (TimeoutError, asyncio.TimeoutError):
                done = set()  # distributed raises when nothing finished in time
            except CancelledError:  # the scheduler is gone: its futures are cancelled
                for fut in [f for f in pending if f.status in ("finished", "error")]:
                    pending.discard(fut)
                    yield self._result(fut, futures.pop(fut))
                raise TrustlabError(
                    f"lost the connection to the Dask scheduler with {len(pending)} trial(s) "
                    "left; the finished trials are stored: run again to resume") from None
            for fut in done:
                yield self._result(fut, futures.pop(fut))
            if done or self.cluster is not None and self.slurm is None:
                idle_since = None  # progress, or a LocalCluster (its workers are ours)
                continue
            # Watchdog: with no worker at all for too long (every Slurm job gone and none
            # replaced, a scheduler whose workers died), stop instead of waiting forever.
            if self.client.scheduler_info().get("workers"):
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > self.watchdog_s:
                raise TrustlabError(
                    f"no Dask worker for {self.watchdog_s:.0f} s with {len(pending)} "
                    "trial(s) left (Slurm jobs cancelled or stuck in the queue, workers "
                    "gone); the finished trials are stored: run again to resume")


WATCH_INTERVAL_S = 5.0  # how often a waiting sweep checks that some worker exists
WATCHDOG_S = 600.0      # no worker for this long: the sweep ends with one line


def make_slurm_cluster(slurm, log_directory: str | None = None):
    """A :class:`dask_jobqueue.SLURMCluster` from the experiment's ``executor.slurm`` block;
    the jobs' ``slurm-*.out`` logs go to ``log_directory`` (the run directory's
    ``slurm-logs/``) instead of the current directory."""
    from dask_jobqueue import SLURMCluster

    kwargs = {"cores": slurm.cores, "processes": slurm.processes, "memory": slurm.memory,
              "walltime": slurm.walltime, "job_extra_directives": slurm.job_extra_directives,
              **({"log_directory": str(log_directory)} if log_directory else {}),
              **slurm.options}
    if slurm.queue:
        kwargs["queue"] = slurm.queue
    if slurm.account:
        kwargs["account"] = slurm.account
    try:
        return SLURMCluster(**kwargs)
    except TypeError as exc:
        raise TrustlabError(f"executor.slurm: {exc}") from None


EXECUTORS = ("local", "dask", "slurm")


def make_executor(name: str, *, workers: int = 1, scheduler: str | None = None, slurm=None,
                  log_directory: str | None = None):
    """``local`` (worker processes here), ``dask`` (a scheduler address, the experiment's
    Slurm block through dask-jobqueue, or a LocalCluster) or ``slurm`` (dask-jobqueue's
    SLURMCluster from the ``executor.slurm`` block, its defaults when there is none)."""
    if name == "local":
        if scheduler:
            raise TrustlabError("--scheduler needs --executor dask")
        return LocalExecutor(workers)
    if name == "dask":
        return DaskExecutor(workers, address=scheduler, slurm=slurm,
                            log_directory=log_directory)
    if name == "slurm":
        if scheduler:
            raise TrustlabError("--scheduler is for --executor dask; --executor slurm starts "
                                "its own cluster")
        from trustlab.experiments.config import SlurmConfig

        return DaskExecutor(workers, slurm=slurm or SlurmConfig(), log_directory=log_directory)
    raise TrustlabError(f"unknown executor {name!r}; choose one of: {', '.join(EXECUTORS)}")
