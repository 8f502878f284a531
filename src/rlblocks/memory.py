"""How much memory a run will take, checked against the machine before anything is created.

A replay buffer or network far too large for the machine otherwise fails inside ``torch.zeros``
(after the run directory exists) or drives the machine into swap. The estimate covers the large,
preallocated parts: the replay buffer and the networks with their targets, gradients and Adam
moments.
"""

from __future__ import annotations

import itertools
import os

from rlblocks.errors import ConfigError

GiB = 2**30


def available_bytes() -> int | None:
    """Memory available to a new allocation (Linux ``MemAvailable``; else physical memory), or ``None``."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def replay_bytes(cfg, obs_dim: int, act_dim: int) -> int:
    """Bytes of the preallocated replay buffer (obs, next_obs, action, reward as float32; two bool flags)."""
    if not hasattr(cfg, "buffer_size"):
        return 0
    rows = max(1, cfg.buffer_size // cfg.num_envs) * cfg.num_envs
    return rows * ((2 * obs_dim + act_dim + 1) * 4 + 2)


def network_bytes(cfg, obs_dim: int, act_dim: int) -> int:
    """Bytes of the actor and critic MLPs with target copies, gradients and two Adam moments (float32)."""
    sizes = [obs_dim + act_dim, *cfg.hidden_sizes, max(2 * act_dim, 1)]
    params = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    networks = 1 + getattr(cfg, "num_critics", 1)  # actor + critic members
    return params * 4 * 5 * networks  # weights, target, gradient, Adam's two moments


def check_memory(cfg, obs_dim: int, act_dim: int, available: int | None = None) -> None:
    """Raise :class:`ConfigError` if the replay buffer and networks need more memory than is available.

    Raises:
        ConfigError: naming the keys (``buffer_size``, ``hidden_sizes``), the estimate, the memory
            available and the largest ``buffer_size`` that fits.
    """
    available = available_bytes() if available is None else available
    if available is None:
        return
    replay, nets = replay_bytes(cfg, obs_dim, act_dim), network_bytes(cfg, obs_dim, act_dim)
    if replay + nets <= available:
        return
    if replay >= nets:
        per_row = replay / max(1, cfg.buffer_size)
        fit = int(max(0, available - nets) / per_row) // 1000 * 1000
        raise ConfigError(f"buffer_size={cfg.buffer_size} needs about {replay / GiB:.1f} GiB for the replay buffer "
                          f"({obs_dim}-dim observations) but this machine has {available / GiB:.1f} GiB available; "
                          f"lower it (--set buffer_size={fit} fits)")
    sizes = ",".join(map(str, cfg.hidden_sizes))
    raise ConfigError(f"hidden_sizes={sizes} needs about {nets / GiB:.1f} GiB for the networks, their targets and "
                      f"optimizer state but this machine has {available / GiB:.1f} GiB available; use smaller layers "
                      "(e.g. --set hidden_sizes=256,256)")
