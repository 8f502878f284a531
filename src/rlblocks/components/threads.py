"""The ``threads`` module: torch's intra-op threads follow the cores that other processes leave free.

Small-MLP updates gain from a second thread only when a core is idle. With more runnable threads
than cores, OpenMP's spinning workers fight each other: two default SAC HalfCheetah runs started
together on 2 cores fell from 148 to 30 steps/s each with 2 threads, and ran at 87-93 steps/s each
with one thread (``benchmarks/concurrency.py``, docs/benchmarks.md). With ``threads=None`` (auto,
the default) this module chooses ``cores - others`` threads (at least 1) when a run first starts,
where ``others`` is the number of runnable threads of other processes (``/proc/loadavg`` minus
this process's running threads, median of a few samples).

The count is chosen once per run and kept in the checkpoint, so that a resumed run uses the count
the run started with: results depend on it (PPO's updates differ in the last bits between 1 and 2
threads), and a run must resume bit-exactly and a seed must give one result. An explicit count
(``--threads N``, or ``OMP_NUM_THREADS`` in the environment) overrides the recorded one; a resume
with a different count than the run's continues correctly but not bit-exactly.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import torch

from rlblocks.module import Module


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _running_total() -> int:
    """Runnable threads on the machine (``/proc/loadavg``'s fourth field, ``running/total``)."""
    with open("/proc/loadavg") as fh:
        return int(fh.read().split()[3].split("/")[0])


def _running_own() -> int:
    """Threads of this process in state R (running or runnable)."""
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                n += fh.read().rsplit(")", 1)[1].split()[0] == "R"
        except OSError:  # the thread ended meanwhile
            pass
    return n


def others_running(samples: int = 3, interval: float = 0.01, total: Callable[[], int] = _running_total,
                   own: Callable[[], int] = _running_own) -> float | None:
    """Median number of runnable threads of other processes, or ``None`` where ``/proc`` is missing."""
    try:
        counts = []
        for i in range(samples):
            counts.append(max(0, total() - own()))
            if i + 1 < samples:
                time.sleep(interval)
    except (OSError, ValueError, IndexError):
        return None
    return statistics.median(counts)


def free_threads(n_cores: int, others: float | None) -> int:
    """Threads to use: the cores others leave free, at least 1 (all cores when unknown)."""
    if others is None:
        return n_cores
    return max(1, min(n_cores, n_cores - round(others)))


def env_threads() -> int | None:
    """``OMP_NUM_THREADS`` when it is set to a positive count, else ``None``."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else None


def resolve_threads(threads: int | None) -> tuple[int, str]:
    """The thread count of a new run and where it came from: ``threads`` (``--threads``), else
    ``OMP_NUM_THREADS``, else the cores other processes leave free now (:func:`free_threads`)."""
    if threads is not None:
        return threads, "--threads"
    if env_threads() is not None:
        return env_threads(), "OMP_NUM_THREADS"
    return free_threads(cores(), others_running()), f"the cores free of other processes, of {cores()}"


class Threads(Module):
    """Sets torch's thread count when training starts (see the module docstring).

    ``fixed``: a count chosen by the user (or ``OMP_NUM_THREADS`` when set); else the count in the
    run's checkpoint, else ``recorded`` (the run's ``config.json``), else the free cores now.
    """

    name = "threads"

    def __init__(self, fixed: int | None = None, recorded: int | None = None):
        super().__init__()
        self.fixed = fixed if fixed is not None else env_threads()
        self.count: int | None = recorded  # the count in effect: recorded in checkpoints

    def on_train_start(self) -> None:
        """Only a run started by ``rlblocks``'s loop (``run.train``/``resume``) manages threads; an agent
        stepped by hand (``agent.train``) leaves the caller's setting alone."""
        if self.fixed is not None:
            self.count = self.fixed
        elif self.count is None:  # an agent built without a run's count
            self.count = free_threads(cores(), others_running())
        if self.count != torch.get_num_threads():
            torch.set_num_threads(self.count)

    def state_dict(self):
        return {} if self.count is None else {"count": self.count}

    def load_state_dict(self, state):
        if "count" in state:
            self.count = int(state["count"])
