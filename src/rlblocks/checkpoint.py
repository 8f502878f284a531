"""Atomic, pickle-free checkpoints.

Layout of ``<run>/checkpoints/``::

    step_0000100000/
        state.pt      torch tensors and plain containers, loaded with weights_only=True
        replay.npz    one .npz per large-array module, loaded with allow_pickle=False
        meta.json     env steps, format version and the SHA-256 of every file
    latest.json       {"name": "step_0000100000"}

A checkpoint is written into a hidden temporary directory and renamed into place, then
``latest.json`` is replaced atomically, so a crash at any moment leaves the previous checkpoint
intact. Only the newest ``keep_full`` checkpoints keep their replay buffers; older ones keep the
weights (periodic snapshots) to bound disk use.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from rlblocks.errors import CheckpointError
from rlblocks.module import ArrayCheckpoint

FORMAT_VERSION = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``.

    Raises:
        OSError: the write failed (disk full, permissions); the temporary file is removed and
            ``path`` keeps its previous content.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(root: Path, agent, keep_full: int = 2) -> Path:
    """Save ``agent`` (see :meth:`rlblocks.agent.Agent.state_dict`) under ``root``; return its dir.

    The checkpoint is written into ``.tmp-step_N-<pid>/`` and renamed to ``step_N/``; only then does
    ``latest.json`` name it. A step that ``latest.json`` already names is not written again, and a
    ``step_N/`` that it does not name (left by a save killed before its ``latest.json`` update) is
    moved aside, not removed, until its replacement is in place: at every moment ``latest.json``
    names a complete checkpoint.

    Raises:
        CheckpointError: a write failed (disk full, permissions); the temporary files are removed and
            the previous checkpoint stays the latest.
    """
    root.mkdir(parents=True, exist_ok=True)
    name = step_name(agent.env_steps)
    final = root / name
    previous = _latest_name(root)
    if previous == name and final.is_dir():
        return final  # this step is saved already: never write one step twice
    tmp, aside = root / f".tmp-{name}-{os.getpid()}", None
    state = agent.state_dict()
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for module in agent.modules_of(ArrayCheckpoint):
            module.save(tmp / f"{module.name}.npz")
        torch.save(state, tmp / "state.pt")
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        meta = {"format_version": FORMAT_VERSION, "env_steps": agent.env_steps, "files": files}
        atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=1))
        if final.exists():  # not the latest (checked above): a killed save's leftover
            aside = root / f".old-{name}-{os.getpid()}"
            os.replace(final, aside)
        os.replace(tmp, final)
        atomic_write_text(root / "latest.json", json.dumps({"name": name}))
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write (a full disk) as RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None and not final.exists():  # put a killed save's leftover back where it was
            os.replace(aside, final)
        kept = f"the previous checkpoint {root / previous} is intact" if previous else "no earlier checkpoint exists"
        cause = (e.strerror or str(e)) if isinstance(e, OSError) else "torch.save could not write state.pt"
        raise CheckpointError(f"writing checkpoint {final} failed ({cause}); {kept}; free disk space "
                              "(or fix permissions) and resume the run") from None
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    _prune(root, name, keep_full)
    return final


def step_name(env_steps: int) -> str:
    """The checkpoint directory name of ``env_steps``: ``step_0000001000``."""
    return f"step_{env_steps:010d}"


#: The only names ``latest.json`` may give: a ``step_*`` directory inside ``checkpoints/``.
STEP_PATTERN = re.compile(r"^step_\d{10}$")


def _latest_name(root: Path) -> str | None:
    """The name ``root/latest.json`` gives, or ``None`` (missing or unreadable)."""
    try:
        name = json.loads((root / "latest.json").read_text())["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) and STEP_PATTERN.match(name) else None


def _prune(root: Path, current: str, keep_full: int) -> None:
    """Drop the large arrays of checkpoints older than ``current`` but the newest ``keep_full - 1``."""
    older = sorted(p for p in root.glob("step_*") if p.is_dir() and STEP_PATTERN.match(p.name) and p.name < current)
    for old in older[:max(0, len(older) - (keep_full - 1))]:
        for npz in old.glob("*.npz"):
            npz.unlink()


def state_leaves(state: Any, prefix: str = ""):
    """``(path, value)`` of every leaf of a nested checkpoint state (dicts, lists, tuples), paths such
    as ``.modules.policy.actor.net.0.weight`` and ``.optimizer.state[0]``: for comparing two states."""
    if isinstance(state, dict):
        for k, v in state.items():
            yield from state_leaves(v, f"{prefix}.{k}")
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            yield from state_leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, state


def has_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` has ever been checkpointed (a ``latest.json`` or any ``step_*`` directory)."""
    root = Path(run_dir) / "checkpoints"
    return (root / "latest.json").exists() or any(root.glob("step_*"))


def latest_checkpoint(run_dir: Path) -> Path:
    """The directory named by ``checkpoints/latest.json``.

    Raises:
        CheckpointError: no checkpoint, or a pointer to a missing directory.
    """
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest.json"
    if not pointer.exists():
        steps = sorted(p.name for p in root.glob("step_*") if STEP_PATTERN.match(p.name))
        if steps:
            raise CheckpointError(f"{pointer} is missing but {root} holds {', '.join(steps[-2:])}; name the newest "
                                  f'complete one in it: {{"name": "{steps[-1]}"}}')
        raise CheckpointError(f"{run_dir} has no checkpoint yet (missing {pointer}); `rlblocks resume {run_dir}` "
                              "trains it from step 0")
    try:
        name = json.loads(pointer.read_text())["name"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise CheckpointError(f"{pointer} is corrupt; point it at a step_* directory: "
                              '{"name": "step_..."}') from None
    if not isinstance(name, str) or not STEP_PATTERN.match(name):
        raise CheckpointError(f"{pointer} names {name!r}, not a step_* directory of {root}; point it at one: "
                              '{"name": "step_0000001000"}')
    path = root / name
    if not (path / "state.pt").exists():
        raise CheckpointError(f"checkpoint {path} is missing; edit {pointer} to name an existing step_* directory")
    return path


def load_checkpoint(path: Path, verify: bool = True) -> dict[str, Any]:
    """Load ``state.pt`` without unpickling arbitrary objects; check hashes first.

    Raises:
        CheckpointError: unreadable metadata, a hash mismatch (corrupt file) or a bad format.
    """
    try:
        meta = json.loads((path / "meta.json").read_text())
        files = meta["files"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        raise CheckpointError(f"checkpoint {path} has no readable meta.json; resume from an earlier checkpoint") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {meta.get('format_version')}, this rlblocks reads {FORMAT_VERSION}")
    if not isinstance(files, dict) or "state.pt" not in files or not all(
            isinstance(f, str) and isinstance(d, str) and f == Path(f).name for f, d in files.items()):
        raise CheckpointError(f"checkpoint {path}/meta.json does not list its files; resume from an earlier checkpoint")
    if verify:
        for fname, digest in files.items():
            fpath = path / fname
            if fpath.exists() and _sha256(fpath) != digest:
                raise CheckpointError(f"checkpoint file {fpath} is corrupt (checksum mismatch); "
                                      "resume from an earlier checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about some refused payloads; the error below says it
            warnings.simplefilter("ignore")
            return torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for truncated/garbled files
        raise CheckpointError(f"checkpoint {path / 'state.pt'} cannot be read ({type(e).__name__}); "
                              "resume from an earlier checkpoint") from None


def restore_agent(agent, path: Path, with_buffers: bool = True, state: dict[str, Any] | None = None) -> None:
    """Load a checkpoint directory into ``agent`` (modules, counters, RNG, large arrays).

    ``state`` is the already loaded ``state.pt`` (from :func:`load_checkpoint`), to avoid reading
    and hashing the checkpoint twice.
    """
    if state is None:
        state = load_checkpoint(path)
    try:
        agent.load_state_dict(state)
    except CheckpointError:
        raise
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {path} does not match this agent ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]}); was it written with another config?") from None
    if with_buffers:
        for module in agent.modules_of(ArrayCheckpoint):
            npz = path / f"{module.name}.npz"
            if not npz.exists():
                raise CheckpointError(f"{npz} is missing (an older periodic checkpoint keeps weights only); "
                                      "resume from the latest checkpoint")
            module.load(npz)
