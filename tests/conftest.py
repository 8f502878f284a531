"""Shared fixtures for the core test-suite (replay, nets, config, CLI, determinism, snapshots)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def _tree_state(root: Path) -> dict[str, str]:
    """``{relative path: sha256 of the content, or "<dir>"}`` for everything under ``root``.

    Taken before and after a failing command, it proves the command created, removed or
    rewrote nothing.
    """
    root = Path(root)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def _cli(*args, cwd: Path, timeout: float = 300, env_vars: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m rlblocks ARGS`` in ``cwd`` (one torch thread: the test machine is small),
    with ``env_vars`` added to the environment."""
    env = dict(os.environ, **(env_vars or {}))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    return subprocess.run([sys.executable, "-m", "rlblocks", *map(str, args)], check=False, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def cli():
    """``cli(*args, cwd=dir)`` → ``CompletedProcess`` of ``python -m rlblocks ARGS``."""
    return _cli


@pytest.fixture(scope="session")
def tree_state():
    """``tree_state(root)`` → ``{path: content hash}`` of a directory tree."""
    return _tree_state


@pytest.fixture
def one_thread(monkeypatch):
    """Run a compute-heavy test with one torch thread (restored afterwards): on a small shared
    machine a second intra-op thread only adds contention for these tiny networks. A run started
    inside the test takes its count from ``OMP_NUM_THREADS`` (components/threads.py), so that two
    runs compared bit for bit use the same count whatever the machine's load."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- skips in CI
#: With ``CI=true`` (as ``.ci/run`` sets it), a skipped test fails: CI installs every extra the README
#: promises, so a skip there means an untested feature, never a pass.
STRICT_SKIPS = os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if STRICT_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (every extra is installed there): {reason}"


def pytest_terminal_summary(terminalreporter):
    skipped = len(terminalreporter.stats.get("skipped", []))
    strict = "CI=true: skips fail" if STRICT_SKIPS else "set CI=true to make skips fail"
    terminalreporter.write_line(f"skipped tests: {skipped} ({strict})")
