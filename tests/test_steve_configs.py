"""Shipped STEVE experiment configs (``rlblocks/configs/steve``): every one loads and builds its agent,
inheritance resolves to the paper's values, ``--config`` names the run's algo/env (a conflicting flag
is one error line), ``rlblocks list`` shows them, ``rlblocks sweep --config`` and plot labels."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import tomllib
import torch

from rlblocks import sweep
from rlblocks.algos.targets import TDTarget
from rlblocks.algos.value_expansion import EXPANSION_TARGETS
from rlblocks.cli import main
from rlblocks.config import SHIPPED_DIR, find_config_file, load_config_file, shipped_configs
from rlblocks.errors import ConfigError, RLBlocksError
from rlblocks.module import Closeable
from rlblocks.registry import RunOptions, build_agent, get_algo
from rlblocks.run import resolve_config, resolve_run

ENVS = {"hopper": "Hopper-v5", "walker2d": "Walker2d-v5", "halfcheetah": "HalfCheetah-v5", "swimmer": "Swimmer-v5",
        "humanoid": "Humanoid-v5", "hardcore": "BipedalWalkerHardcore-v3"}
PAPER_SET = ("ddpg", "mve_tdk", "steve")
TINY = {"buffer_size": 1000}  # the paper's 1M-row replay would allocate gigabytes per agent


def test_the_papers_experiment_set_is_shipped():
    names = set(shipped_configs())
    for short in ENVS:
        for variant in (*PAPER_SET, "steve_cpu", "sac", "sac_steve", "td3", "td3_steve"):
            assert f"steve/{short}/{variant}.json" in names
    assert {"steve/humanoid/mve_meank.json", "steve/humanoid/mve_tdlambda.json", "steve/humanoid/steve_cov.json"} <= names
    assert not any("/core/" in n or "/envs/" in n for n in names)  # building blocks, not runs
    assert {"steve/algos/sac_steve.json", "steve/algos/sac.json", "steve/algos/td3_steve.json"} <= names  # arms


def test_package_data_ships_every_config_file():
    """pyproject's package-data glob names the shipped JSON files (checked once by building a wheel)."""
    data = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "configs/**/*.json" in data["tool"]["setuptools"]["package-data"]["rlblocks"]
    assert all(p.suffix == ".json" for p in SHIPPED_DIR.rglob("*") if p.is_file())  # nothing the glob misses


@pytest.mark.parametrize("name", shipped_configs())
def test_every_shipped_config_builds_its_agent(name, one_thread):
    short, variant = Path(name).parent.name, Path(name).stem
    if short == "algos":  # an arm without an env: swept with --env
        with pytest.raises(ConfigError, match="--env is required"):
            resolve_run(None, None, name)
        algo, env_id, path = resolve_run(None, "Hopper-v5", name)
    else:
        algo, env_id, path = resolve_run(None, None, name)
        assert env_id == ENVS[short]
    assert algo == (variant.split("_")[0] if variant.startswith(("sac", "td3")) else "ddpg")
    spec = get_algo(algo)
    cfg = resolve_config(spec, env_id, path, TINY)
    expected_target = {"ddpg": "td", "sac": "td", "td3": "td", "mve_tdk": "mve", "mve_meank": "mean_k",
                       "mve_tdlambda": "td_lambda", "steve_cov": "steve_cov"}.get(variant, "steve")
    assert cfg.target == expected_target and cfg.learning_starts == 10_000
    try:
        agent = build_agent(spec, env_id, cfg, 0, torch.device("cpu"), RunOptions(progress=False, tensorboard=False))
    except RLBlocksError as e:  # BipedalWalkerHardcore needs Box2D: without it, the one clear line
        assert short == "hardcore" and "Box2D" in str(e) and 'pip install "gymnasium[box2d]"' in str(e)
        return
    try:
        target = agent.modules["target"]
        if cfg.target == "td":
            assert isinstance(target, TDTarget) and "world_model" not in agent.modules
        else:
            assert type(target) is EXPANSION_TARGETS[cfg.target]
            assert agent.modules["world_model"].model.ensemble_size == cfg.wm_ensemble
        assert agent.modules["critic"].q.ensemble_size == cfg.num_critics
    finally:
        for module in agent.modules_of(Closeable):
            module.close()


def test_inheritance_resolves_to_the_papers_values():
    steve = resolve_config(get_algo("ddpg"), "Hopper-v5", find_config_file("steve/hopper/steve.json"))
    assert steve.hidden_sizes == [128] * 4 and (steve.actor_lr, steve.critic_lr) == (3e-4, 3e-4)
    assert (steve.batch_size, steve.buffer_size, steve.learning_starts, steve.gamma) == (512, 1_000_000, 10_000, 0.99)
    assert steve.wm_dynamics_hidden == [512] * 8 and steve.wm_reward_hidden == [128] * 4
    assert (steve.wm_batch_size, steve.wm_pretrain_updates, steve.wm_ensemble) == (512, 10_000, 4)
    assert (steve.num_critics, steve.q_samples, steve.target, steve.horizon) == (4, "members", "steve", 3)
    cpu = resolve_config(get_algo("ddpg"), "Hopper-v5", find_config_file("steve/hopper/steve_cpu.json"))
    assert cpu.wm_dynamics_hidden == [256] * 3 and cpu.wm_batch_size == 64 and cpu.wm_pretrain_updates == 1000
    assert cpu.num_critics == 4 and cpu.hidden_sizes == [128] * 4  # only the world model changed
    mve = resolve_config(get_algo("ddpg"), "Hopper-v5", find_config_file("steve/hopper/mve_tdk"))  # .json optional
    assert (mve.target, mve.wm_ensemble, mve.num_critics, mve.wm_dynamics_hidden) == ("mve", 1, 1, [512] * 8)
    sac = resolve_config(get_algo("sac"), "Hopper-v5", find_config_file("steve/hopper/sac_steve.json"))
    assert sac.hidden_sizes == [256, 256] and sac.batch_size == 256 and sac.learning_starts == 10_000
    assert (sac.target, sac.q_samples, sac.wm_dynamics_hidden) == ("steve", "min", [256] * 3)
    raw = load_config_file(find_config_file("steve/hopper/sac_steve.json"))
    assert (raw["algo"], raw["env"]) == ("sac", "Hopper-v5")


def test_a_local_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "steve" / "hopper" / "steve.json"
    local.parent.mkdir(parents=True)
    local.write_text('{"algo": "sac", "env": "Pendulum-v1"}')
    assert find_config_file("steve/hopper/steve.json") == Path("steve/hopper/steve.json")
    assert resolve_run(None, None, "steve/hopper/steve.json")[:2] == ("sac", "Pendulum-v1")
    assert find_config_file("steve/walker2d/steve.json") == SHIPPED_DIR / "steve/walker2d/steve.json"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rlblocks: error: "), err
    return err[0]


@pytest.mark.parametrize("extra, fragments", [
    (["--config", "steve/hopper/steve.json", "--algo", "sac"],
     ['--algo sac conflicts with "algo": "ddpg" in config steve/hopper/steve.json']),
    (["--config", "steve/hopper/steve.json", "--env", "Walker2d-v5"],
     ['--env Walker2d-v5 conflicts with "env": "Hopper-v5"']),
    (["--config", "steve/hoper/steve.json"], ["does not exist", "did you mean steve/hopper/steve.json"]),
    (["--env", "Hopper-v5"], ["--algo is required"]),
    (["--config", "steve/hopper/steve.json", "--set", "horizon=0", "target=mve"], ["target=mve needs horizon >= 1"]),
])
def test_bad_config_flags_are_one_line_and_leave_nothing(extra, fragments, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *extra, "--steps", "10", "--no-progress"]) == 2
    line = one_error_line(capsys)
    for fragment in fragments:
        assert fragment in line
    assert list(tmp_path.iterdir()) == []


def test_agreeing_flags_and_a_shipped_config_train(capsys, monkeypatch, tmp_path, one_thread):
    """A shipped STEVE config trains end to end through the CLI (tiny sizes); flags that agree with it are fine."""
    monkeypatch.chdir(tmp_path)
    tiny = ["learning_starts=60", "wm_pretrain_updates=3", "batch_size=16", "wm_batch_size=8", "buffer_size=500",
            "hidden_sizes=16,16", "wm_dynamics_hidden=16", "wm_reward_hidden=16", "log_every=100"]
    assert main(["train", "--config", "steve/swimmer/sac_steve.json", "--algo", "sac", "--steps", "120",
                 "--run-dir", "r", "--no-progress", "--eval-every", "0", "--threads", "1", "--set", *tiny]) == 0
    record = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (record["algo"], record["env_id"], record["config"]["target"]) == ("sac", "Swimmer-v5", "steve")
    assert record["options"]["config_file"] == "steve/swimmer/sac_steve.json"
    with open(tmp_path / "r" / "progress.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[-1]["model_usage"]) > 0.0  # the expansion target ran


def test_list_shows_the_shipped_configs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "shipped configs" in out
    lines = [line for line in out.splitlines() if "steve/hopper/steve.json" in line]
    assert len(lines) == 1 and "ddpg on Hopper-v5" in lines[0] and "STEVE" in lines[0]
    assert sum("steve/" in line for line in out.splitlines()) == len(shipped_configs())
    assert any("steve/algos/sac_steve.json" in line and "sac on --env ENV" in line for line in out.splitlines())


def test_sweep_plans_from_a_config(tmp_path):
    plan = sweep.plan_sweep(None, None, "0,1", config_file="steve/hopper/sac_steve.json", sweep_dir=tmp_path / "s",
                            steps=1000)
    assert (plan.algos, plan.envs, [r.seed for r in plan.runs]) == (["sac"], ["Hopper-v5"], [0, 1])
    cmd = sweep.run_command(plan, plan.runs[0])
    assert cmd[cmd.index("--config") + 1] == str((SHIPPED_DIR / "steve/hopper/sac_steve.json").resolve())
    base = sweep.plan_sweep(None, None, "0", config_file="steve/hopper/sac.json")
    arm = sweep.plan_sweep(None, None, "0", config_file="steve/hopper/sac_steve.json")
    assert base.root != arm.root  # the config's values are part of the default sweep directory's hash
    with pytest.raises(ConfigError, match="--algo td3 conflicts"):
        sweep.plan_sweep("td3", None, "0", config_file="steve/hopper/sac_steve.json")
    with pytest.raises(ConfigError, match="--algo sac,td3 conflicts"):
        sweep.plan_sweep("sac,td3", None, "0", config_file="steve/hopper/sac_steve.json")
    with pytest.raises(ConfigError, match="--env is required"):
        sweep.plan_sweep(None, None, "0", config_file="steve/algos/sac_steve.json")
    arms = sweep.plan_sweep(None, "Hopper-v5,HalfCheetah-v5", "0", config_file="steve/algos/sac_steve.json")
    assert arms.algos == ["sac"] and arms.envs == ["Hopper-v5", "HalfCheetah-v5"]  # one sweep per arm


def test_sweep_with_a_config_runs_and_refuses_another_config(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    conf = tmp_path / "pend.json"
    conf.write_text(json.dumps({"algo": "sac", "env": "Pendulum-v1", "updates": {
        "learning_starts": 50, "batch_size": 16, "hidden_sizes": [16, 16], "target": "steve", "horizon": 1,
        "wm_pretrain_updates": 2, "wm_batch_size": 8, "wm_dynamics_hidden": [16], "wm_reward_hidden": [16]}}))
    args = ["sweep", "--config", "pend.json", "--seeds", "0", "--steps", "80", "--sweep-dir", "sw",
            "--eval-every", "0", "--no-progress"]
    assert main(args) == 0, (tmp_path / "sw/sac/Pendulum-v1/seed0/train.log").read_text()
    record = json.loads((tmp_path / "sw/sac/Pendulum-v1/seed0/config.json").read_text())
    assert (record["config"]["target"], record["config"]["horizon"], record["config"]["batch_size"]) == ("steve", 1, 16)
    capsys.readouterr()
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"algo": "sac", "env": "Pendulum-v1", "batch_size": 32}))
    assert main([*args[:2], "other.json", *args[3:]]) == 2
    assert "was made with --config pend.json" in one_error_line(capsys)


def write_run(root: Path, algo: str, target: str, seed: int, scores: list[float]) -> None:
    run = root / f"{algo}-{target}" / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"algo": algo, "env_id": "Hopper-v5", "seed": seed,
                                                 "config": {"target": target, "horizon": 3}}))
    rows = ["hours,epoch,frames,score"] + [f"0.1,{i},{1000 * (i + 1)},{s}" for i, s in enumerate(scores)]
    (run / "eval.csv").write_text("\n".join(rows) + "\n")


def test_plot_separates_steve_from_its_base_algorithm(tmp_path):
    pytest.importorskip("matplotlib", reason="plot extra")
    from rlblocks.plot import plot_sweep

    for seed in (0, 1):
        write_run(tmp_path, "sac", "td", seed, [1.0, 2.0])
        write_run(tmp_path, "sac", "steve", seed, [5.0, 7.0 + seed])
    _, md, csv_path = plot_sweep(tmp_path, tmp_path / "fig.png")
    with open(csv_path) as fh:
        rows = {r["algo"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"sac", "sac+steve H3"}
    assert float(rows["sac"]["final_mean"]) == 2.0 and float(rows["sac+steve H3"]["final_mean"]) == 7.5
    assert "sac+steve H3" in md.read_text()


def test_efficiency_table_from_synthetic_sweeps(tmp_path, capsys):
    """benchmarks/steve_efficiency.py: returns at the compared steps (mean ± s.e.), base steps to match."""
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / "steve_efficiency.py"
    spec = importlib.util.spec_from_file_location("steve_efficiency", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for seed in (0, 1):  # eval rows at frames 1000, 2000, 3000
        write_run(tmp_path / "base", "sac", "td", seed, [0.0, 10.0 + 2 * seed, 20.0 + 2 * seed])
        write_run(tmp_path / "arm", "sac", "steve", seed, [15.0 + 2 * seed, 25.0, 30.0])
    arms, compare, _ = bench.analyse([tmp_path], [1000, 3000], measured_cost=False)
    rows = {r["arm"]: r for r in arms}
    assert rows["sac+steve H3"]["mean@1000"] == 16.0 and rows["sac+steve H3"]["se@1000"] == pytest.approx(1.0)
    assert rows["sac"]["mean@3000"] == 21.0 and rows["sac"]["n@3000"] == 2
    (c,) = compare
    assert (c["arm"], c["base"]) == ("sac+steve H3", "sac")
    assert c["ratio"] == pytest.approx(16.0 / 21.0)
    assert c["base_steps_to_match"] == pytest.approx(2500.0)  # base mean 11 at 2000, 21 at 3000: 16 at 2500
    assert c["efficiency"] == pytest.approx(2.5)
    assert bench.main([str(tmp_path), "--at", "1000,3000"]) == 0
    assert "| Hopper-v5 | sac+steve H3 vs sac | 16.0 | 0.0 | 21.0 | 0.76 | 2,500 | 2.50x |" in capsys.readouterr().out
