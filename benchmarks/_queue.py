"""A queue of whole benchmark jobs that survives being stopped, shared by the benchmark scripts.

A job's result lands in the repository (``docs/results/...``) only when the job completes, so
re-running the queue in a later session (a fresh checkout: nothing else survives) skips finished
jobs and starts an interrupted one again, or continues it where its scratch directory survived
(``run_into``'s ``workdir``). Several workers may pull from one queue: each job runs
under a ``filelock`` lock (the OS drops it if the worker is killed) and a worker skips the jobs
another one holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
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


def run_into(final: Path, cmd: list[str], kept: dict[str, str], label: str, prefix: str = "bench-job-",
             workdir: Path | None = None) -> float:
    """Run ``cmd`` as a whole process (one torch thread) in a scratch directory; land ``kept`` files in ``final``.

    Every ``{tmp}`` in ``cmd`` becomes the scratch directory. ``kept`` maps a path under it to the name
    the file gets in ``final``. The files are copied into ``<final>.part`` (ignored by git), with
    ``job.json`` (the command, its wall time in seconds, the UTC end time), and the directory is then
    renamed to ``final``: a stopped job leaves at most a ``.part`` that the next attempt removes.
    Returns the wall time (process start to exit) in seconds.

    With ``workdir``, that directory is the scratch directory instead of a temporary one, and it
    outlives a stopped or failed attempt: a command that continues from what it finds there (``rlblocks
    train --resume``) then picks up where the last attempt stopped. ``job.json`` counts the
    ``attempts``; its ``wall_s`` is the last attempt's. The directory is removed once the files land.

    Raises:
        SystemExit: the command failed (its exit code and the tail of its output).
    """
    part = final.with_name(final.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix))
            attempts = 1
        else:
            workdir.mkdir(parents=True, exist_ok=True)
            tmp = str(workdir.resolve())
            counter = workdir / "attempts.txt"
            attempts = (int(counter.read_text()) if counter.exists() else 0) + 1
            counter.write_text(f"{attempts}\n")
        args = [a.replace("{tmp}", tmp) for a in cmd]
        print(f"{label}: {' '.join(args)}" + (f" (attempt {attempts})" if attempts > 1 else ""), flush=True)
        t0 = time.perf_counter()
        with open(f"{tmp}/log.txt", "a" if workdir else "w") as log:
            proc = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, check=False,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"{label} failed (exit {proc.returncode}):\n{Path(tmp, 'log.txt').read_text()[-2000:]}")
        part.mkdir(parents=True)
        for src, name in kept.items():
            shutil.copy2(Path(tmp, src), part / name)
        record = {"cmd": [a.replace(tmp, "{tmp}") for a in args], "wall_s": round(wall, 1), "attempts": attempts,
                  "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (part / "job.json").write_text(json.dumps(record, indent=1) + "\n")
    part.rename(final)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{label}: done in {wall:.0f} s -> {final}", flush=True)
    return wall
