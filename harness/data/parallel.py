"""Run independent units of work (one file, one cache segment) on a pool of processes."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from typing import Any

from harness.lifeline import die_with_parent
from harness.progress import bar


def available_cpus() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_parallel(
    work: Callable[..., Any],
    jobs: Sequence[tuple[Any, ...]],
    *,
    processes: int,
    description: str,
    unit: str,
    poll: Callable[[int], Any] | None = None,
    poll_s: float = 1.0,
) -> list[Any]:
    """Call ``work(*job)`` for every job on ``processes`` processes; return results in job order.

    The first failure cancels the jobs not yet started and is raised once the running ones stop,
    so that nothing is left half-written by a process still running in the background.
    ``poll(jobs done)``, when given, replaces the per-job bar and is called every ``poll_s``
    while jobs run (progress within long jobs).
    """
    if not jobs:
        return []
    counted = poll is None  # a bar of jobs done, unless poll shows progress within jobs
    if processes <= 1 or len(jobs) == 1:
        results: list[Any] = []
        stop = threading.Event()
        if poll is not None:
            ticker = threading.Thread(target=_tick, args=(poll, poll_s, stop, results), daemon=True)
            ticker.start()
        try:
            for job in bar(jobs, description=description, unit=unit, enabled=counted):
                results.append(work(*job))
        finally:
            stop.set()
        if poll is not None:
            ticker.join()
            poll(len(results))
        return results
    # fork starts workers without re-importing everything (a second or more per worker), but is
    # only safe from a single-threaded parent; the progress bar's thread starts after the pool.
    method = "fork" if threading.active_count() == 1 and os.name == "posix" else "spawn"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(
        max_workers=processes,
        mp_context=context,
        initializer=die_with_parent,  # a worker whose parent is killed stops writing at once
        initargs=(os.getpid(),),
    ) as pool:
        futures: list[Future[Any]] = [pool.submit(work, *job) for job in jobs]
        progress = bar(total=len(jobs), description=description, unit=unit, enabled=counted)
        try:
            pending: set[Future[Any]] = set(futures)
            while pending:
                timeout = None if poll is None else poll_s
                done, pending = wait(pending, timeout=timeout, return_when=FIRST_EXCEPTION)
                progress.update(len(done))
                if poll is not None:
                    poll(len(futures) - len(pending))
                for future in done:
                    if future.exception() is not None:
                        pool.shutdown(wait=True, cancel_futures=True)
                        raise future.exception()  # type: ignore[misc]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            progress.close()
        return [future.result() for future in futures]


def _tick(poll: Callable[[int], Any], every_s: float, stop: threading.Event, done: list) -> None:
    while not stop.wait(every_s):
        poll(len(done))
