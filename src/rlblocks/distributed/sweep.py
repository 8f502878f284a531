"""Sweep runs as Ray tasks: ``rlblocks sweep ... --backend ray``.

Each run is the same ``python -m rlblocks train|resume ...`` command as in a local sweep, started
by a Ray task that reserves the run's CPUs (and a GPU for ``--device cuda``, or ``auto`` on a
cluster that has GPUs) and appends the run's output to its ``train.log``. So run directories,
``sweep.json``, resume-on-rerun and ``rlblocks plot`` are those of the local sweep. On a cluster
the sweep directory must be on a filesystem every node mounts at the same path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def run_command(cmd: list[str], log: str, env: dict[str, str], cwd: str) -> int:
    """The Ray task: run ``cmd`` (its ``cmd[0]`` replaced by this node's Python) with ``env`` added
    to this worker's environment, output appended to ``log``; returns its exit status.

    A first cancellation (``ray.cancel``: ``KeyboardInterrupt`` here) asks the run to checkpoint and
    stop (SIGINT, as Ctrl-C on ``rlblocks train``); a second one kills it."""
    full_env = {**os.environ, **env}
    with open(os.path.join(cwd, log), "a") as fh:
        proc = subprocess.Popen([sys.executable, *cmd[1:]], stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=full_env, cwd=cwd, start_new_session=True)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            try:
                return proc.wait()
            except KeyboardInterrupt:
                proc.kill()
                return proc.wait()


class RayRun:
    """A sweep run submitted as a Ray task, with the parts of :class:`subprocess.Popen`'s interface
    that :func:`rlblocks.sweep.run_sweep` uses (``poll``, ``returncode``, ``send_signal``, ``kill``,
    ``wait``).

    Args:
        cmd: the run's command line (``python -m rlblocks ...``).
        log: its ``train.log`` (absolute, or relative to ``cwd``).
        env: environment variables to add on the node (threads, unbuffered output, ``PYTHONPATH``).
        cwd: the directory relative paths in ``cmd`` refer to.
        cpus, gpus: the resources Ray reserves for the run.
    """

    def __init__(self, cmd: list[str], log: str, env: dict[str, str], cwd: str, cpus: float = 1.0, gpus: float = 0.0):
        import ray

        self.ray = ray
        task = ray.remote(run_command).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        self.ref = task.remote(cmd, log, env, cwd)
        self.log = os.path.join(cwd, log)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            ready, _ = self.ray.wait([self.ref], timeout=0)
            if ready:
                try:
                    self.returncode = int(self.ray.get(self.ref))
                except (self.ray.exceptions.RayError, KeyboardInterrupt) as e:  # the task died or was cancelled
                    self.returncode = 1
                    text = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
                    with open(self.log, "a") as fh:  # the sweep's FAILED line shows the log's last line
                        fh.write(f"the Ray task of this run failed: {type(e).__name__}: {text}\n")
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """Any signal: cancel the task, which asks the run to checkpoint and stop (SIGINT)."""
        self.ray.cancel(self.ref)

    def kill(self) -> None:
        self.ray.cancel(self.ref, force=True)

    def wait(self) -> int:
        while self.poll() is None:
            self.ray.wait([self.ref], timeout=1.0)
        return self.returncode


def gpus_per_run(device: str) -> float:
    """1 for ``cuda``, or for ``auto`` when the cluster has GPUs; else 0."""
    import ray

    if device.startswith("cuda"):
        return 1.0
    return 1.0 if device == "auto" and ray.cluster_resources().get("GPU", 0) > 0 else 0.0
