"""`rlblocks train --load RUN_DIR`: a new run that starts from another run's trained weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlblocks.errors import RLBlocksError

TINY = ["--set", "hidden_sizes=32,32", "learning_starts=100", "batch_size=32", "buffer_size=1000",
        "eval_episodes=1"]
LOADED = ("normalizer", "policy", "critic")  # the modules holding weights, in module order


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "rlblocks", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def latest_state(run_dir: Path) -> dict:
    name = json.loads((run_dir / "checkpoints" / "latest.json").read_text())["name"]
    return torch.load(run_dir / "checkpoints" / name / "state.pt", weights_only=True)


def leaves(value, prefix=""):
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, f"{prefix}.{k}")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("load") / "source"
    proc = cli("train", "--algo", "sac", "--env", "Pendulum-v1", "--steps", "300", "--seed", "0",
               "--eval-every", "0", "--run-dir", str(run), "--no-progress", *TINY)
    assert proc.returncode == 0, proc.stderr
    return run


def test_load_starts_from_the_source_weights(source, tmp_path):
    new = tmp_path / "new"
    # One env step, before learning_starts: no update, so the saved weights are the loaded ones.
    proc = cli("train", "--algo", "sac", "--env", "Pendulum-v1", "--steps", "1", "--seed", "7", "--eval-every", "0",
               "--run-dir", str(new), "--no-progress", "--load", str(source), *TINY)
    assert proc.returncode == 0, proc.stderr
    assert "loaded normalizer, policy, critic" in proc.stdout  # the modules holding weights, in module order
    src, dst = latest_state(source), latest_state(new)
    for name in LOADED:
        a, b = dict(leaves(src["modules"][name])), dict(leaves(dst["modules"][name]))
        assert a.keys() == b.keys() and a
        for key, value in a.items():
            assert torch.equal(value, b[key]), f"{name}{key} differs"
    # Not loaded: counters, optimizer state, update count.
    assert dst["counters"]["env_steps"] == 1
    assert dst["modules"]["algo"]["updates"] == 0 and src["modules"]["algo"]["updates"] > 0
    assert dst["modules"]["algo"]["optimizers"]["adam"]["state"] == {}
    record = json.loads((new / "config.json").read_text())
    assert record["seed"] == 7 and record["options"]["loaded_from"].startswith(str(source))


def test_load_weights_in_process(source):
    from rlblocks.registry import RunOptions, build_agent, get_algo
    from rlblocks.run import check_load_source, load_weights, resolve_config

    spec = get_algo("sac")
    cfg = resolve_config(spec, "Pendulum-v1", overrides={"hidden_sizes": [32, 32], "buffer_size": 1000,
                                                         "batch_size": 32})
    agent = build_agent(spec, "Pendulum-v1", cfg, 3, torch.device("cpu"), RunOptions(None, 10, 0, 0, False, False))
    try:
        src = check_load_source(source, spec, "Pendulum-v1")
        saved = dict(leaves(src.state["modules"]["policy"]))
        assert not torch.equal(agent.policy.actor.state_dict()[next(iter(agent.policy.actor.state_dict()))],
                               saved[".actor." + next(iter(agent.policy.actor.state_dict()))])
        assert load_weights(agent, src) == list(LOADED)
        for key, value in agent.policy.actor.state_dict().items():
            assert torch.equal(value, saved[f".actor.{key}"])
        # The optimizer still drives the same (now loaded) parameter tensors.
        opt_params = {id(p) for g in agent.algo.optimizer.param_groups for p in g["params"]}
        assert all(id(p) in opt_params for p in agent.policy.actor.parameters())
        assert agent.env_steps == 0 and agent.algo.updates == 0
    finally:
        agent.env.close()


def test_load_rejects_another_algorithm(source, tmp_path):
    proc = cli("train", "--algo", "td3", "--env", "Pendulum-v1", "--steps", "1", "--run-dir", str(tmp_path / "n"),
               "--load", str(source), "--no-progress")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlblocks: error: --load") and "sac run" in lines[0]
    assert not (tmp_path / "n").exists()


def test_load_rejects_other_network_sizes_and_leaves_no_run(source, tmp_path):
    proc = cli("train", "--algo", "sac", "--env", "Pendulum-v1", "--steps", "1", "--run-dir", str(tmp_path / "n"),
               "--load", str(source), "--no-progress", "--set", "hidden_sizes=16,16", "buffer_size=1000")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "hidden_sizes (32,32 there, 16,16 here)" in lines[0], proc.stderr
    assert not (tmp_path / "n").exists()


def test_load_rejects_other_observation_shapes(source):
    from rlblocks.registry import get_algo
    from rlblocks.run import check_load_source

    with pytest.raises(RLBlocksError, match=r"observation shape \(3,\).*observation shape \(2,\)"):
        check_load_source(source, get_algo("sac"), "MountainCarContinuous-v0")
    with pytest.raises(RLBlocksError, match="not a run directory"):
        check_load_source(source / "checkpoints", get_algo("sac"), "Pendulum-v1")
