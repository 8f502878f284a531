"""A queue of whole benchmark jobs that survives being stopped, shared by the benchmark scripts.

A job's result lands in the repository (``docs/results/...``) only when the job completes, so
re-running the queue in a later session (a fresh checkout: nothing else survives) skips finished
jobs and starts an interrupted one again. Several workers may pull from one queue: each job runs
under a ``filelock`` lock (the OS drops it if the worker is killed) and a worker skips the jobs
another one holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from filelock import FileLock, Timeout

Job = TypeVar("Job")


def run_queue(jobs: Iterable[Job], result: Callable[[Job], Path], run: Callable[[Job], None]) -> int:
    """Run every job whose ``result(job)`` path does not exist yet, skipping jobs another worker holds.

    ``run(job)`` must create ``result(job)`` atomically (write elsewhere, then rename) when it
    succeeds. The lock is ``<result>.job.lock`` beside it. Returns the number of jobs run here.
    """
    ran = 0
    for job in jobs:
        final = result(job)
        if final.exists():
            continue
        final.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(final) + ".job.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # another worker runs this job
        try:
            if not final.exists():  # it may have finished while we looked
                run(job)
                ran += 1
        finally:
            lock.release()
    return ran
