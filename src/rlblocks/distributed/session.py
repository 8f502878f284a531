"""Start a local Ray instance or join a cluster, for one run or one sweep."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from rlblocks.errors import RLBlocksError

#: Object store of a local Ray started here: weights and rollouts are small, and the machine is
#: shared with the runs themselves (Ray's default takes 30% of the memory).
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20


def require_ray():
    """The ``ray`` module.

    Raises:
        RLBlocksError: Ray is not installed (names the extra to install).
    """
    try:
        import ray
    except ImportError:
        raise RLBlocksError('--backend ray needs Ray, which is not installed: pip install -e ".[ray]"') from None
    return ray


def worker_env() -> dict[str, str]:
    """Environment variables of Ray workers: this rlblocks first on ``PYTHONPATH`` (so a checkout that
    is not installed works too), one torch thread each (a worker acts with small networks)."""
    src = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """Raise :class:`RLBlocksError` unless ``host:port`` (``ray://`` allowed; ``auto`` and ``None``
    pass) accepts a TCP connection within ``timeout`` seconds: Ray itself retries a wrong address
    for minutes."""
    if not address or address == "auto":
        return
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RLBlocksError(f"--ray-address {address} is not HOST:PORT (e.g. 10.0.0.5:6379, the address `ray start "
                            "--head` prints)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise RLBlocksError(f"--ray-address {address}: nothing answers there ({e.strerror or e}); start a cluster with "
                            "`ray start --head` on that machine, or drop --ray-address to start a local Ray") from None


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator:
    """Yield the ``ray`` module with Ray running: joined at ``address`` (``ray start --head`` made
    it; ``"auto"`` finds a local one), else a local instance started here and shut down on exit.
    A Ray already initialised in this process (a test's, a notebook's) is used and left running.

    Raises:
        RLBlocksError: Ray missing, or no cluster at ``address`` (one line, with the fix).
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    check_address(address)
    runtime_env = {"env_vars": worker_env()}
    try:
        if address:
            ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=num_cpus, runtime_env=runtime_env, include_dashboard=False,
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        text = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        if address:
            raise RLBlocksError(f"--ray-address {address}: no Ray cluster could be joined ({text}); start one with "
                                "`ray start --head` there, or drop --ray-address to start a local Ray") from None
        raise RLBlocksError(f"starting a local Ray failed ({text})") from None
    try:
        yield ray
    finally:
        ray.shutdown()
