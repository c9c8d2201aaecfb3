"""Where jobs run: in this process, in local worker processes, or on a Ray cluster — same results.

:func:`execute` maps a top-level function over picklable items and returns the results in item order,
with a progress bar over jobs as they finish. Every executor runs **every** job even when some fail: a
job's failure (an exception, or its worker process dying outright) is reported after the others have
finished, by re-raising the first failure, so finished jobs keep their shards and ``resume`` can redo
only the failed ones.

``processes`` is a small pool of our own rather than :class:`concurrent.futures.ProcessPoolExecutor`:
when one of its workers dies (killed, out of memory, ``os._exit``) that executor marks the whole pool
broken and terminates the other workers mid-job, losing their shards. Here the parent knows which job
each worker holds, so a dead worker fails exactly its job and is replaced. Workers are spawned (no fork
of a process that may hold torch threads) and run torch on one thread each, so N workers use N cores.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from tqdm.auto import tqdm

from coordscope.choices import EXECUTORS
from coordscope.errors import ConfigError
from coordscope.heap import keep_freed_memory

T = TypeVar("T")
R = TypeVar("R")
Outcome = tuple[int, bool, Any]  # (item index, succeeded, result or exception)


class WorkerDied(RuntimeError):
    """A worker process exited (killed, crashed, ``os._exit``) while running a job."""


def execute(fn: Callable[[T], R], items: Iterable[T], *, executor: str = "inline", workers: int | None = None,
            desc: str = "jobs", progress: bool = True) -> list[R]:
    """``[fn(item) for item in items]`` on ``executor`` (``inline``, ``processes`` or ``ray``).

    ``workers`` (default: the CPU count) bounds the parallel jobs of ``processes`` and the CPUs of a
    Ray instance started here. For ``processes`` and ``ray``, ``fn`` must be a module-level function and
    the items picklable; a :class:`~coordscope.spec.Spec` object cannot travel — pass its reference.
    ``progress`` shows a bar over jobs on stderr (when it is a terminal).
    """
    jobs = list(items)
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r} (choose from {', '.join(EXECUTORS)})")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    if not jobs:
        return []
    if executor != "inline":
        _check_portable(jobs, executor)
    n_workers = workers or os.cpu_count() or 1
    run = {"inline": _inline, "processes": _processes, "ray": _ray}[executor]
    results: dict[int, Any] = {}
    errors: dict[int, BaseException] = {}
    with tqdm(total=len(jobs), desc=desc, unit="job", disable=None if progress else True) as bar:
        for index, ok, value in run(fn, jobs, n_workers):
            (results if ok else errors)[index] = value
            if not ok:
                bar.write(f"coordscope: {desc}: job {index + 1}/{len(jobs)} failed: "
                          f"{type(value).__name__}: {value}".split("\n")[0], file=sys.stderr)
            bar.update(1)
    if errors:
        raise errors[min(errors)]
    return [results[i] for i in range(len(jobs))]


def _check_portable(items: Sequence[Any], executor: str) -> None:
    """Refuse Spec objects bound for another process: they hold closures, and workers re-import by ref."""
    from coordscope.spec import Spec

    for item in items:
        fields = dataclasses.fields(item) if dataclasses.is_dataclass(item) else ()
        values = [item, *(getattr(item, f.name) for f in fields)]
        if any(isinstance(v, Spec) for v in values):
            raise ConfigError(f"executor {executor!r} needs a spec that workers can import: pass a file, module, "
                              "module:attr or sample name instead of a Spec object")


def _inline(fn: Callable[[Any], Any], items: Sequence[Any], n_workers: int) -> Iterable[Outcome]:
    for index, item in enumerate(items):
        try:
            yield index, True, fn(item)
        except Exception as exc:  # the other jobs still run; execute() re-raises this afterwards
            yield index, False, exc


def _portable_exception(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (to travel back to the parent), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _worker_main(conn: Connection, fn: Callable[[Any], Any]) -> None:
    """A worker process: one torch thread, freed memory kept (:mod:`coordscope.heap`), then run the jobs
    the parent sends until it sends None."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    keep_freed_memory()
    while True:
        message = conn.recv()
        if message is None:
            return
        index, item = message
        try:
            conn.send((index, True, fn(item)))
        except Exception as exc:
            conn.send((index, False, _portable_exception(exc)))


def _processes(fn: Callable[[Any], Any], items: Sequence[Any], n_workers: int) -> Iterable[Outcome]:
    """Run the items on ``n_workers`` spawned processes, one job at a time each; replace dead workers."""
    context = get_context("spawn")
    pending = deque(enumerate(items))
    running: dict[Connection, tuple[BaseProcess, int | None]] = {}

    def start() -> None:
        parent, child = context.Pipe()
        process = context.Process(target=_worker_main, args=(child, fn), daemon=True)
        process.start()
        child.close()  # so that the parent sees EOF when the worker dies
        running[parent] = (process, None)
        dispatch(parent)

    def dispatch(conn: Connection) -> None:
        process, _ = running[conn]
        if pending:
            index, item = pending.popleft()
            conn.send((index, item))
            running[conn] = (process, index)
        else:
            conn.send(None)
            conn.close()
            process.join()
            del running[conn]

    try:
        for _ in range(min(n_workers, len(items))):
            start()
        while running:
            for conn in wait(list(running)):
                assert isinstance(conn, Connection)
                process, index = running[conn]
                try:
                    outcome = conn.recv()
                except EOFError:  # the worker died: fail its job, replace it
                    process.join()
                    del running[conn]
                    conn.close()
                    if index is not None:
                        yield index, False, WorkerDied(f"worker process died (exit code {process.exitcode}) "
                                                       "while running this job")
                    if pending:
                        start()
                    continue
                yield outcome
                dispatch(conn)
    finally:  # an exception or Ctrl-C in the parent: stop every worker now
        for conn, (process, _) in running.items():
            process.terminate()
            process.join()
            conn.close()


def _ray_call(fn: Callable[[Any], Any], item: Any) -> Any:
    """What a Ray task runs: ``fn(item)`` with torch on one thread (Ray gave the task one CPU), in a
    worker process that keeps freed memory (:mod:`coordscope.heap`)."""
    import torch

    torch.set_num_threads(1)
    keep_freed_memory()
    return fn(item)


def _ray(fn: Callable[[Any], Any], items: Sequence[Any], n_workers: int) -> Iterable[Outcome]:
    """Run the items as Ray tasks of one CPU each, on the connected cluster or a local instance started
    here with ``n_workers`` CPUs and this process's import path (left running for later calls in this
    process; Ray shuts it down at exit). Tasks are not retried: a job that kills its worker fails, as
    with ``processes``."""
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'coordscope[ray]'") from None
    if not ray.is_initialized():
        # Workers of a local instance see this process's import path, so that specs importable here
        # (a module next to the working directory, a test module) are importable there too.
        path = os.pathsep.join(os.path.abspath(p or os.curdir) for p in sys.path)
        ray.init(num_cpus=n_workers, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "PYTHONPATH": path}})
    task = ray.remote(num_cpus=1, max_retries=0)(_ray_call)
    refs = {task.remote(fn, item): index for index, item in enumerate(items)}
    remaining = list(refs)
    while remaining:
        done, remaining = ray.wait(remaining, num_returns=1)
        for ref in done:
            try:
                yield refs[ref], True, ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # the job raised: hand back its own exception
                cause = getattr(exc, "cause", None)
                yield refs[ref], False, cause if isinstance(cause, Exception) else exc
            except ray.exceptions.RayError as exc:  # the worker died, or the task could not run
                yield refs[ref], False, WorkerDied(f"Ray task failed: {type(exc).__name__}: {exc}".split("\n")[0])
