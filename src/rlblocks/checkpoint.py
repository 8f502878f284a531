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
import shutil
from pathlib import Path
from typing import Any

import torch

from rlblocks.errors import CheckpointError

FORMAT_VERSION = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(root: Path, agent, keep_full: int = 2) -> Path:
    """Save ``agent`` (see :meth:`rlblocks.agent.Agent.state_dict`) under ``root``; return its dir."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{agent.env_steps:010d}"
    final, tmp = root / name, root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state = agent.state_dict()
    for mod_name, module in agent.modules.items():
        if module.checkpoint_format == "npz":
            module.save(tmp / f"{mod_name}.npz")
    torch.save(state, tmp / "state.pt")
    files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
    meta = {"format_version": FORMAT_VERSION, "env_steps": agent.env_steps, "files": files}
    atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(root / "latest.json", json.dumps({"name": name}))
    _prune(root, keep_full)
    return final


def _prune(root: Path, keep_full: int) -> None:
    dirs = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in dirs[:-keep_full]:
        for npz in old.glob("*.npz"):
            npz.unlink()


def latest_checkpoint(run_dir: Path) -> Path:
    """The directory named by ``checkpoints/latest.json``.

    Raises:
        CheckpointError: no checkpoint, or a pointer to a missing directory.
    """
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest.json"
    if not pointer.exists():
        raise CheckpointError(f"{run_dir} has no checkpoint (missing {pointer}); train first with `rlblocks train`")
    try:
        name = json.loads(pointer.read_text())["name"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise CheckpointError(f"{pointer} is corrupt; point it at a step_* directory: "
                              '{"name": "step_..."}') from None
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
    if verify:
        for fname, digest in files.items():
            fpath = path / fname
            if fpath.exists() and _sha256(fpath) != digest:
                raise CheckpointError(f"checkpoint file {fpath} is corrupt (checksum mismatch); "
                                      "resume from an earlier checkpoint")
    try:
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
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} does not match this agent ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]}); was it written with another config?") from None
    if with_buffers:
        for mod_name, module in agent.modules.items():
            if module.checkpoint_format == "npz":
                npz = path / f"{mod_name}.npz"
                if not npz.exists():
                    raise CheckpointError(f"{npz} is missing (an older periodic checkpoint keeps weights only); "
                                          "resume from the latest checkpoint")
                module.load(npz)
