"""Configs: range validation messages, ``--set`` string coercion, JSON files with ``inherits``,
layering (defaults → preset → file → --set) and the run hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing

import pytest

from rlblocks.algos.ddpg import DDPGConfig
from rlblocks.algos.sac import SACConfig
from rlblocks.config import load_config_file, parse_overrides
from rlblocks.errors import ConfigError, RLBlocksError
from rlblocks.registry import ALGOS, NAMED_PRESETS, get_algo
from rlblocks.run import resolve_config


def check(values: dict, cls=SACConfig):
    cfg = cls().updated(values, "--set")
    cfg.validate()
    return cfg


# ---------------------------------------------------------------------------- validation
def _invalid_values(f: dataclasses.Field, kind: type) -> list:
    """Values just outside the declared range / choices of field ``f`` (of type ``kind``)."""
    meta, out = f.metadata, []
    lo, hi = meta.get("low"), meta.get("high")
    if lo is not None:
        out.append(kind(lo) if meta.get("low_open") else (lo - 1 if kind is int else lo - 0.5))
    if hi is not None:
        out.append(hi + 1 if kind is int else hi + 0.5)
    if meta.get("choices"):
        out.append("no-such-choice")
    if kind is list:
        out += [[], [0]]
    return out


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_defaults_validate_and_every_bounded_key_is_enforced(algo):
    """Every algorithm's defaults and presets validate; a value outside each key's declared range,
    outside its choices, or a bad width list raises one ConfigError line that starts with that key."""
    spec = get_algo(algo)
    cls = spec.config_cls
    cls().validate()
    for pattern, values in spec.presets.items():
        cls().updated(values, f"preset {pattern}").validate()
    for name, (algos, values, _) in NAMED_PRESETS.items():
        if algo in algos:
            cls().updated(values, f"preset {name}").validate()
    hints = typing.get_type_hints(cls)
    checked = 0
    for f in dataclasses.fields(cls):
        for bad in _invalid_values(f, hints[f.name]):
            cfg = dataclasses.replace(cls(), **{f.name: bad})
            with pytest.raises(ConfigError) as err:
                cfg.validate()
            message = str(err.value)
            assert message.startswith(f"{f.name}=") and "\n" not in message, (f.name, bad, message)
            checked += 1
    assert checked >= 20  # the shared keys alone (gamma, num_envs, obs_clip, ...) give more


@pytest.mark.parametrize("values, message", [
    ({"actor_lr": "-1"}, "actor_lr=-1.0 is out of range: must be > 0.0 and <= 1.0"),
    ({"actor_lr": "0"}, "actor_lr=0.0 is out of range: must be > 0.0 and <= 1.0"),
    ({"gamma": "1.5"}, "gamma=1.5 is out of range: must be >= 0.0 and <= 1.0"),
    ({"gamma": "-0.1"}, "gamma=-0.1 is out of range: must be >= 0.0 and <= 1.0"),
    ({"num_envs": "0"}, "num_envs=0 is out of range: must be >= 1 and <= 1024"),
    ({"batch_size": "0"}, "batch_size=0 is out of range: must be >= 1"),
    ({"tau": "2"}, "tau=2.0 is out of range: must be > 0.0 and <= 1.0"),
    ({"batch_size": "512", "buffer_size": "100"}, "batch_size=512 is larger than buffer_size=100"),
    ({"buffer_size": "2", "batch_size": "1", "num_envs": "4"}, "buffer_size=2 must be >= num_envs=4"),
    ({"batch_size": "1.5"}, "batch_size=1.5 must be an integer"),
    ({"gamma": "nan"}, "gamma=nan must be finite"),
    ({"hidden_sizes": "64,0"}, "hidden_sizes=[64, 0] must be a list of positive integers"),
    ({"hidden_sizes": ""}, "hidden_sizes=[] must be a list of positive integers"),
    ({"vector_mode": "threads"}, "vector_mode='threads' is not one of sync, async"),
    ({"normalize_obs": "maybe"}, "normalize_obs='maybe' cannot be read as bool"),
    ({"batch_size": "lots"}, "batch_size='lots' cannot be read as int"),
])
def test_validation_errors_name_key_and_range(values, message):
    with pytest.raises(ConfigError) as info:
        check(values)
    assert message in str(info.value)
    assert "\n" not in str(info.value)  # the CLI prints it as one line


def test_out_of_range_message_points_at_set():
    with pytest.raises(ConfigError, match=r"\(--set actor_lr=\.\.\.\)"):
        check({"actor_lr": -1.0})


def test_unknown_key_suggests_close_match():
    with pytest.raises(ConfigError) as info:
        SACConfig().updated({"acotr_lr": "1"}, "--set")
    assert str(info.value) == "unknown config key 'acotr_lr' in --set; did you mean actor_lr?"
    with pytest.raises(ConfigError, match=r"unknown config key 'zzzzzz' in my.json; `rlblocks list` shows the keys"):
        SACConfig().updated({"zzzzzz": 1}, "my.json")
    # a TD3-only key is unknown to SAC
    with pytest.raises(ConfigError, match="policy_delay"):
        SACConfig().updated({"policy_delay": 2}, "--set")


def test_ddpg_cross_check():
    with pytest.raises(ConfigError, match="noise_type=ou needs exploration_noise > 0"):
        check({"noise_type": "ou", "exploration_noise": "0"}, DDPGConfig)


# ---------------------------------------------------------------------------- coercion
@pytest.mark.parametrize("key, text, expected", [
    ("batch_size", "64", 64),
    ("batch_size", "1e3", 1000),
    ("buffer_size", "1000000", 1_000_000),
    ("actor_lr", "3e-4", 3e-4),
    ("actor_lr", "0.001", 0.001),
    ("gamma", "1", 1.0),
    ("normalize_obs", "true", True),
    ("normalize_obs", "True", True),
    ("normalize_obs", "yes", True),
    ("normalize_obs", "1", True),
    ("normalize_obs", "off", False),
    ("normalize_obs", "false", False),
    ("normalize_obs", "0", False),
    ("hidden_sizes", "64,64", [64, 64]),
    ("hidden_sizes", "[400, 300]", [400, 300]),
    ("hidden_sizes", "32", [32]),
    ("vector_mode", "async", "async"),
])
def test_set_string_coercion(key, text, expected):
    cfg = check({key: text})
    value = getattr(cfg, key)
    assert value == expected and type(value) is type(expected)


def test_json_values_are_kept_and_ints_become_floats():
    cfg = check({"actor_lr": 1, "batch_size": 32, "hidden_sizes": [8, 8], "normalize_obs": True})
    assert cfg.actor_lr == 1.0 and type(cfg.actor_lr) is float
    assert cfg.batch_size == 32 and cfg.hidden_sizes == [8, 8] and cfg.normalize_obs is True
    with pytest.raises(ConfigError, match="normalize_obs=1 must be true or false"):
        check({"normalize_obs": 1})


def test_updated_returns_a_copy():
    base = SACConfig()
    new = base.updated({"hidden_sizes": "8,8", "gamma": "0.9"}, "--set")
    assert base.hidden_sizes == [256, 256] and base.gamma == 0.99
    assert new.hidden_sizes == [8, 8] and new.gamma == 0.9
    assert SACConfig().hidden_sizes is not SACConfig().hidden_sizes  # list defaults are per instance


def test_parse_overrides():
    assert parse_overrides(["a=1", " b = x y ", "c=k=v", "d="]) == {"a": "1", "b": "x y", "c": "k=v", "d": ""}
    for bad in ("novalue", "=3"):
        with pytest.raises(ConfigError, match="must look like key=value"):
            parse_overrides([bad])


# ---------------------------------------------------------------------------- JSON files
def write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_inherits_parents_first_child_wins(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "base.json", {"batch_size": 64, "gamma": 0.9, "tau": 0.01, "hidden_sizes": [8, 8]})
    write(tmp_path / "sub" / "mid.json", {"inherits": "../base.json", "gamma": 0.95, "actor_lr": 0.002})
    write(tmp_path / "other.json", {"tau": 0.02, "critic_lr": 0.003})
    child = write(tmp_path / "sub" / "child.json", {
        "inherits": ["mid.json", "../other.json"],  # resolved relative to the child file
        "updates": {"batch_size": 128, "gamma": 0.97},
        "critic_lr": 0.004,
    })
    values = load_config_file(child)
    assert values == {"batch_size": 128, "gamma": 0.97, "tau": 0.02, "hidden_sizes": [8, 8],
                      "actor_lr": 0.002, "critic_lr": 0.004}
    # later parents win over earlier ones; plain keys win over the same file's updates block
    write(tmp_path / "both.json", {"updates": {"gamma": 0.5}, "gamma": 0.6})
    assert load_config_file(tmp_path / "both.json") == {"gamma": 0.6}


def test_inherits_cycle_is_detected(tmp_path):
    write(tmp_path / "a.json", {"inherits": "b.json", "gamma": 0.9})
    write(tmp_path / "b.json", {"inherits": ["c.json"]})
    write(tmp_path / "c.json", {"inherits": ["a.json"]})
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_config_file(tmp_path / "a.json")
    write(tmp_path / "self.json", {"inherits": "self.json"})
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_config_file(tmp_path / "self.json")
    # a diamond (two parents sharing a grandparent) is not a cycle
    write(tmp_path / "g.json", {"gamma": 0.8})
    write(tmp_path / "p1.json", {"inherits": "g.json", "tau": 0.1})
    write(tmp_path / "p2.json", {"inherits": "g.json", "batch_size": 7})
    write(tmp_path / "d.json", {"inherits": ["p1.json", "p2.json"]})
    assert load_config_file(tmp_path / "d.json") == {"gamma": 0.8, "tau": 0.1, "batch_size": 7}


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_config_file(tmp_path / "bad.json")
    write(tmp_path / "list.json", [1, 2])
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        load_config_file(tmp_path / "list.json")
    write(tmp_path / "orphan.json", {"inherits": "nowhere.json"})
    with pytest.raises(ConfigError, match="nowhere.json does not exist"):
        load_config_file(tmp_path / "orphan.json")


def test_resolve_config_layers(tmp_path):
    """defaults → env preset → config file → --set, each later layer winning."""
    spec = get_algo("sac")
    preset = spec.preset_for("Pendulum-v1")
    assert {"learning_starts", "actor_lr", "critic_lr"} <= set(preset)
    assert spec.preset_for("HalfCheetah-v5") == {}
    cfg = resolve_config(spec, "Pendulum-v1")
    assert {k: getattr(cfg, k) for k in preset} == preset
    assert cfg.learning_starts != SACConfig().learning_starts  # the preset changed something
    assert resolve_config(spec, "HalfCheetah-v5") == SACConfig()
    path = write(tmp_path / "c.json", {"algo": "td3", "env_id": "X", "seed": 3,  # run identity, ignored
                                        "learning_starts": 50, "actor_lr": 0.01, "batch_size": 32})
    cfg = resolve_config(spec, "Pendulum-v1", str(path), {"actor_lr": "0.02"})
    assert (cfg.learning_starts, cfg.actor_lr, cfg.batch_size) == (50, 0.02, 32)
    assert cfg.critic_lr == preset["critic_lr"]  # untouched by file and --set
    with pytest.raises(ConfigError, match="c2.json"):  # the file is named in the error
        resolve_config(spec, "Pendulum-v1", str(write(tmp_path / "c2.json", {"nosuch": 1})))
    with pytest.raises(ConfigError, match="actor_lr=-1.0 is out of range"):
        resolve_config(spec, "Pendulum-v1", None, {"actor_lr": "-1"})
    with pytest.raises(RLBlocksError, match="did you mean sac"):
        get_algo("sacc")


# ---------------------------------------------------------------------------- run hash
def test_short_hash_is_stable_and_depends_on_non_default_keys_only():
    default = SACConfig()
    assert default.non_default() == {}
    assert default.short_hash() == hashlib.sha1(b"{}").hexdigest()[:8]
    cfg = default.updated({"batch_size": "64", "hidden_sizes": "32,32"}, "--set")
    assert cfg.non_default() == {"batch_size": 64, "hidden_sizes": [32, 32]}
    blob = json.dumps({"batch_size": 64, "hidden_sizes": [32, 32]}, sort_keys=True).encode()
    assert cfg.short_hash() == hashlib.sha1(blob).hexdigest()[:8]
    assert len(cfg.short_hash()) == 8 and cfg.short_hash() != default.short_hash()
    # order of application and spelling do not matter; setting a key to its default changes nothing
    same = default.updated({"hidden_sizes": [32, 32]}, "x").updated({"batch_size": 64.0, "gamma": "0.99"}, "y")
    assert same.short_hash() == cfg.short_hash()
    assert default.updated({"gamma": 0.99, "tau": "0.005"}, "--set").short_hash() == default.short_hash()
    # any non-default value changes it
    assert default.updated({"batch_size": 65, "hidden_sizes": "32,32"}, "x").short_hash() != cfg.short_hash()


# ---------------------------------------------------------------------------- named presets
def test_named_presets_apply_in_order(tmp_path):
    from rlblocks.registry import NAMED_PRESETS, get_algo
    from rlblocks.run import resolve_config

    cfg = resolve_config(get_algo("ddpg"), "Pendulum-v1", None, {"batch_size": "64"}, "protoge")
    protoge = NAMED_PRESETS["protoge"][1]
    assert cfg.hidden_sizes == protoge["hidden_sizes"] and cfg.layer_norm and cfg.learning_starts == 5000
    assert (cfg.tau, cfg.target_update_every, cfg.her) == (0.05, 40, "rfaab_1_4_3_1_1")  # mrl's protoge_config
    assert cfg.actor_layer_norm and cfg.grad_value_clip == 5.0
    assert cfg.batch_size == 64  # --set wins over the preset
    # on goal envs DDPG/TD3 normalise each key with mrl's eps (1e-8) and clip TD targets to the sparse-return
    # range; SAC takes raw inputs and unclipped targets (SB3's HER setup), with and without fetch-cpu
    for algo, norm_and_clip in (("ddpg", True), ("td3", True), ("sac", False)):
        for preset in (None, "fetch-cpu"):
            cfg = resolve_config(get_algo(algo), "FetchPush-v4", None, None, preset)
            assert (cfg.normalize_obs, cfg.her_clip_target) == (norm_and_clip, norm_and_clip)
            assert (cfg.gamma, cfg.obs_clip, cfg.obs_norm_eps) == (0.98, 5.0, 1e-8)  # mrl's, when normalising
    # SAC + fetch-cpu on FetchPush is the run that solved it on two seeds (benchmarks/fetchpush.py sac_her_raw)
    bench_sets = {"normalize_obs": "false", "her_clip_target": "false", "tau": "0.005", "alpha_lr": "0.001",
                  "buffer_size": "1000000"}
    assert resolve_config(get_algo("sac"), "FetchPush-v4", None, None, "fetch-cpu") == \
        resolve_config(get_algo("sac"), "FetchPush-v4", None, bench_sets, "fetch-cpu")
    path = tmp_path / "c.json"
    path.write_text('{"preset": "fetch-cpu", "updates": {"batch_size": 128}}')
    cfg = resolve_config(get_algo("td3"), "Pendulum-v1", str(path))
    assert (cfg.batch_size, cfg.gamma, cfg.hidden_sizes) == (128, 0.98, [256, 256])  # file values win over its preset


@pytest.mark.parametrize("algo, name, fragment", [
    ("sac", "protog", "unknown preset 'protog'"),
    ("sac", "protoge", "preset 'protoge' is for ddpg, td3, not sac"),
    ("dqn", "fetch-cpu", "preset 'fetch-cpu' is for ddpg, td3, sac, not dqn"),
])
def test_bad_named_preset_is_one_line(algo, name, fragment, capsys, monkeypatch, tmp_path):
    from rlblocks.cli import main

    monkeypatch.chdir(tmp_path)
    env = "CartPole-v1" if algo == "dqn" else "Pendulum-v1"
    assert main(["train", "--algo", algo, "--env", env, "--preset", name, "--steps", "100", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]
    assert list(tmp_path.iterdir()) == []


def test_keys_are_grouped_by_module_and_take_their_group_as_a_prefix():
    """``--set replay.n_step=3`` is ``n_step=3`` (config.json keeps the flat names, so old runs and
    commands load); a wrong group is one line naming the right one; ``rlblocks list`` groups keys."""
    from rlblocks.config import key_groups
    from rlblocks.registry import get_algo

    cls = get_algo("sac").config_cls
    groups = key_groups(cls)
    assert (groups["n_step"], groups["learning_starts"], groups["target"], groups["wm_lr"], groups["arch"],
            groups["merl"], groups["hidden_sizes"], groups["num_envs"]) == (
        "replay", "explore", "target", "world_model", "encoder", "aux", "net", "env")
    assert key_groups(get_algo("dqn").config_cls)["exploration_steps"] == "explore"
    assert key_groups(get_algo("ppo").config_cls)["n_steps"] == "algo"
    dotted = cls().updated({"replay.n_step": "3", "explore.learning_starts": 7}, "--set")
    assert dotted == cls().updated({"n_step": "3", "learning_starts": 7}, "--set")
    assert dotted.to_dict()["n_step"] == 3
    with pytest.raises(ConfigError, match=r"n_step is a replay setting \(replay.n_step\)"):
        cls().updated({"target.n_step": "3"}, "--set")
    with pytest.raises(ConfigError, match="unknown config key 'replay.nstep'"):
        cls().updated({"replay.nstep": "3"}, "--set")


def test_rlblocks_list_shows_keys_grouped_by_module(cli, tmp_path):
    r = cli("list", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    sac = r.stdout.split("\ntd3 ")[0]
    assert "\n  replay:\n    buffer_size" in sac and "\n  explore:\n    learning_starts" in sac


def test_presets_are_shipped_data_files_with_their_notes():
    """Presets live in ``configs/presets`` (named: ``--preset NAME``; per algorithm: env id globs), each
    with the notes that say what it is and what it measured; none is listed as a runnable config."""
    from rlblocks.config import PRESETS_DIR, env_presets, named_presets, shipped_configs
    from rlblocks.registry import ALGOS, NAMED_PRESETS

    named = named_presets()
    assert set(named) == set(NAMED_PRESETS) >= {"protoge", "fetch-cpu", "fetch-cpu-explore", "pendulum-novel"}
    assert all(entry["notes"] and entry["description"] for entry in named.values())
    for algo, spec in ALGOS.items():
        assert spec.presets == env_presets(algo)
    files = list((PRESETS_DIR / "env").glob("*.json"))
    assert {p.stem for p in files} == set(ALGOS)
    assert all(entry["notes"] for p in files for entry in json.loads(p.read_text()).values())
    assert not [name for name in shipped_configs() if name.startswith("presets/")]
