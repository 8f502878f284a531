"""A run directory on disk: its ``config.json`` record, its lock and its temporaries.

One process at a time may change a run directory. :class:`RunLock` holds an exclusive
``flock`` on ``<run>/.lock`` (through the ``filelock`` package) for as long as a command trains,
resumes or replaces the run; the kernel drops the lock when the process ends, however it ends,
so a crashed or killed process never leaves a run locked. The holder writes its pid, host, start
time and command line into the lock file, so a second process can name it in its error.

:func:`read_record` reads and type-checks ``config.json``; :func:`remove_orphans` deletes the
temporaries that a killed process leaves behind (half-written checkpoints and files).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import socket
import sys
from pathlib import Path
from typing import Any, Self

from rlblocks.checkpoint import atomic_write_text, latest_checkpoint
from rlblocks.errors import CheckpointError, RLBlocksError

LOCK_NAME = ".lock"

#: Written (atomically) once a run's end-of-run work (last log row, final evaluation) is on disk.
FINISHED_NAME = "finished.json"

#: Names of temporaries a killed writer can leave in a run directory or its ``checkpoints/``:
#: ``.tmp-step_*`` / ``.old-step_*`` (checkpoint directories), ``.<file>.tmp<pid>``
#: (:func:`rlblocks.checkpoint.atomic_write_text`) and ``<name>.tmp<ns>`` (CSV rewrites).
ORPHAN_PATTERN = re.compile(r"^(\.tmp-step_|\.old-step_|\..+\.tmp\d+$|.+\.tmp\d+$)")


class RunBusyError(RLBlocksError):
    """Another live process holds the run directory's lock."""


class RunLock:
    """An exclusive, non-blocking lock on a run directory (context manager).

    Raises:
        RunBusyError: from :meth:`acquire` when another process holds the lock; the message
            names that process (pid, host, command, start time) and what to do.
    """

    def __init__(self, run_dir: str | Path):
        from filelock import FileLock

        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        # thread_local=False, is_singleton=False: a second RunLock on the same path in this process
        # must fail as it would in another process (two commands on one run are an error).
        self._lock = FileLock(str(self.path), timeout=0, thread_local=False, is_singleton=False)

    def acquire(self) -> RunLock:
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            holder, pid = self._holder()
            stop = f"`kill -INT {pid}`" if pid else "Ctrl-C in its terminal"
            raise RunBusyError(f"{self.run_dir} is in use by {holder}; wait for it to finish or stop it with {stop} "
                               "(it saves a checkpoint), then run this again") from None
        except OSError as e:
            raise RLBlocksError(f"cannot lock {self.path} ({e.strerror or e}); check that the directory is "
                                "writable") from None
        argv = list(sys.argv)
        if argv and os.path.basename(argv[0]) in ("rlblocks", "__main__.py"):
            argv[0] = "rlblocks"
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": _dt.datetime.now().isoformat(timespec="seconds"), "command": " ".join(argv)}
        try:
            with open(self.path, "r+") as fh:  # the holder's own file: contenders never truncate it
                fh.truncate(0)
                fh.write(json.dumps(info))
        except OSError:  # a full disk: the lock is held all the same, only the holder's name is missing
            pass
        return self

    def _holder(self) -> tuple[str, int | None]:
        """``(description, pid)`` of the process holding the lock, from the lock file."""
        try:
            info = json.loads(self.path.read_text())
            who = f"process {info['pid']} on {info['host']} (`{info['command']}`, started {info['started']})"
            return who, int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return "another process", None

    def release(self) -> None:
        if self._lock.is_locked:
            try:
                with open(self.path, "r+") as fh:  # leave an empty file: no stale pid to mislead
                    fh.truncate(0)
            except OSError:
                pass  # the directory was removed while we held it (a refused new run)
            self._lock.release(force=True)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def remove_orphans(run_dir: str | Path) -> list[Path]:
    """Delete the temporaries of killed writers in ``run_dir`` and ``run_dir/checkpoints``.

    Call only while holding the run's :class:`RunLock` (a live writer's temporaries look the same).
    Returns the removed paths.
    """
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / "checkpoints"):
        if not folder.is_dir():
            continue
        for child in folder.iterdir():
            if not ORPHAN_PATTERN.match(child.name) or child.name == LOCK_NAME:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
            removed.append(child)
    return removed


def clear_run(run_dir: str | Path) -> None:
    """Delete everything in ``run_dir`` but its lock file (``--overwrite``, under the lock)."""
    for child in Path(run_dir).iterdir():
        if child.name == LOCK_NAME:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def mark_finished(run_dir: str | Path, env_steps: int) -> None:
    """Record that the run in ``run_dir`` finished at ``env_steps``: its final checkpoint, last log
    row and final evaluation are written."""
    atomic_write_text(Path(run_dir) / FINISHED_NAME, json.dumps({"env_steps": int(env_steps)}))


def finished_steps(run_dir: str | Path) -> int | None:
    """The env steps at which the run in ``run_dir`` finished (:func:`mark_finished`), or ``None``: not
    finished, finished at other steps than its latest checkpoint's (resumed to more steps since), or
    an unreadable marker. A run killed between its final checkpoint and its final evaluation is not
    finished: ``rlblocks resume`` writes that evaluation."""
    try:
        steps = json.loads((Path(run_dir) / FINISHED_NAME).read_text())["env_steps"]
        checkpoint = json.loads((latest_checkpoint(Path(run_dir)) / "meta.json").read_text())["env_steps"]
    except (OSError, ValueError, KeyError, TypeError, CheckpointError):
        return None
    return steps if isinstance(steps, int) and steps == checkpoint else None


#: ``config.json`` fields and their types: ``(path, type, what it is)``.
_RECORD_FIELDS = (
    (("algo",), str, "the algorithm name"),
    (("env_id",), str, "the env id"),
    (("seed",), int, "the seed"),
    (("config",), dict, "the hyperparameters"),
    (("options",), dict, "the run options"),
    (("options", "steps"), int, "the total env steps"),
    (("options", "eval_every"), int, "env steps between evaluations"),
    (("options", "checkpoint_every"), int, "env steps between checkpoints"),
)


def read_record(run_dir: str | Path) -> dict[str, Any]:
    """Load and type-check ``<run_dir>/config.json``.

    Raises:
        RLBlocksError: not a run directory, unreadable JSON, or a field missing or of the wrong type
            (naming the field and the expected type).
    """
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise RLBlocksError(f"{run_dir} is not a run directory (no config.json); pass the directory "
                            "`rlblocks train` created")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RLBlocksError(f"{path} is corrupt ({e}); restore it from a copy or start a new run") from None
    if not isinstance(record, dict):
        raise RLBlocksError(f"{path} must hold a JSON object; restore it from a copy or start a new run")
    for keys, kind, what in _RECORD_FIELDS:
        value: Any = record
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok or (kind is int and value < 0):
            field = ".".join(keys)
            got = "is missing" if value is None else f"is {value!r}"
            want = {str: "a string", int: "a non-negative integer", dict: "a JSON object"}[kind]
            raise RLBlocksError(f"{path}: field {field} ({what}) {got} but must be {want}; fix the file "
                                "or start a new run")
    return record
