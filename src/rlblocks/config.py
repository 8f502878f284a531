"""Typed, validated hyperparameter configs.

Each algorithm has a dataclass config whose fields carry their allowed range (see :func:`param`).
Configs are built in layers: dataclass defaults → preset for the env → JSON config file(s) →
``--set key=value`` overrides; the result is validated once and saved as ``config.json``.

JSON config files may inherit (STEVE style, Buckman et al. 2018)::

    {"inherits": ["base.json"], "updates": {"batch_size": 512}}

Parents are resolved relative to the child file and applied first; plain top-level keys are
accepted as well as an ``updates`` block. A config file may also name the run's ``algo`` and
``env`` (see :func:`run_identity`).

Shipped configs: ``--config NAME`` reads the local file ``NAME`` when there is one, else the file
of that name shipped in ``rlblocks/configs/`` (:func:`find_config_file`, :func:`shipped_configs`;
e.g. ``steve/hopper/steve.json``, the experiment set of Buckman et al. 2018, arXiv 1807.01675).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rlblocks.errors import ConfigError

#: The directory of the shipped config files (package data).
SHIPPED_DIR = Path(__file__).parent / "configs"


def param(default: Any, *, low: float | None = None, high: float | None = None,
          low_open: bool = False, choices: tuple | None = None, help: str = "", group: str | None = None) -> Any:
    """A dataclass field with a validated range.

    Args:
        default: the default value (lists are copied per instance).
        low, high: inclusive bounds (``low_open=True`` makes the lower bound strict).
        choices: the allowed values for string options.
        help: one-line description shown by ``rlblocks list``.
        group: the module whose setting this is (``replay``, ``explore``, ...; see :func:`key_groups`);
            ``None``: the declaring class's ``GROUP``.
    """
    meta = {"low": low, "high": high, "low_open": low_open, "choices": choices, "help": help, "group": group}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def key_groups(cls: type) -> dict[str, str]:
    """``{key: group}`` of a config class: the module each key configures (``env``, ``net``,
    ``normalizer``, ``replay``, ``explore``, ``target``, ``world_model``, ``encoder``, ``aux``, ``algo``,
    ``evaluator``, ``logger``). A key's group is its ``param(group=...)``, else the ``GROUP`` of the
    class that declares it. ``--set`` and config files accept ``group.key`` as well as ``key``."""
    owner: dict[str, type] = {}
    for klass in reversed(cls.__mro__):
        for name in vars(klass).get("__annotations__", {}):
            owner[name] = klass
    return {f.name: f.metadata.get("group") or getattr(owner[f.name], "GROUP", "algo") for f in fields(cls)}


@dataclass
class BaseConfig:
    """Keys shared by every algorithm."""

    GROUP: typing.ClassVar[str] = "algo"

    gamma: float = param(0.99, low=0.0, high=1.0, help="discount factor")
    num_envs: int = param(1, low=1, high=1024, help="parallel envs in the vector env", group="env")
    vector_mode: str = param("sync", choices=("sync", "async"), help="gymnasium vector env kind", group="env")
    hidden_sizes: list = param([256, 256], help="MLP hidden layer widths", group="net")
    normalize_obs: bool = param(False, help="running mean/std observation normalisation", group="normalizer")
    obs_clip: float = param(10.0, low=0.0, low_open=True, help="clip normalised obs to ±obs_clip", group="normalizer")
    # 1e-8: baselines' VecNormalize and mrl. HER's baselines normaliser floors the std at 0.01 instead,
    # which 1e-4 approximates: a feature that has barely varied is then not blown up to ±obs_clip by
    # its first small change.
    obs_norm_eps: float = param(1e-8, low=0.0, low_open=True, help="normalised obs = (x - mean) / sqrt(var + "
                                "obs_norm_eps); 1e-4 keeps the std >= 0.01 (HER baselines)", group="normalizer")
    eval_episodes: int = param(10, low=1, help="episodes per evaluation", group="evaluator")
    log_every: int = param(1000, low=0, help="env steps between progress.csv rows (0: one row per update round)",
                           group="logger")

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every field's type and range.

        Raises:
            ConfigError: naming the key, its value and the allowed range.
        """
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            kind = hints[f.name]
            if kind is bool and not isinstance(value, bool):
                raise ConfigError(f"{f.name}={value!r} must be true or false")
            if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"{f.name}={value!r} must be a number")
            if kind is int and not float(value).is_integer():
                raise ConfigError(f"{f.name}={value!r} must be an integer")
            if kind in (int, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name}={value!r} must be finite")
            if kind is list and (not isinstance(value, list) or not value
                                 or not all(isinstance(v, int) and v > 0 for v in value)):
                raise ConfigError(f"{f.name}={value!r} must be a list of positive integers, e.g. 256,256")
            lo, hi = meta.get("low"), meta.get("high")
            below = lo is not None and (value < lo or (meta.get("low_open") and value == lo))
            if below or (hi is not None and value > hi):  # name the whole allowed range either way
                parts = [f"{'>' if meta.get('low_open') else '>='} {lo}"] if lo is not None else []
                parts += [f"<= {hi}"] if hi is not None else []
                rng = " and ".join(parts)
                raise ConfigError(f"{f.name}={value} is out of range: must be {rng} (--set {f.name}=...)")
            choices = meta.get("choices")
            if choices and value not in choices:
                raise ConfigError(f"{f.name}={value!r} is not one of {', '.join(map(str, choices))}")
        self.check()

    def check(self) -> None:
        """Cross-field checks; subclasses extend. Raises :class:`ConfigError`."""

    # ------------------------------------------------------------------ building
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def non_default(self) -> dict[str, Any]:
        """The keys whose value differs from the dataclass default (used for run hashes)."""
        default = type(self)()
        return {k: v for k, v in self.to_dict().items() if getattr(default, k) != v}

    def short_hash(self) -> str:
        """8 hex digits identifying the non-default hyperparameters (r2l's run naming)."""
        blob = json.dumps(self.non_default(), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:8]

    def updated(self, values: dict[str, Any], source: str) -> BaseConfig:
        """A copy with ``values`` applied. Raises :class:`ConfigError` on an unknown key."""
        known = {f.name: f for f in fields(self)}
        hints = typing.get_type_hints(type(self))
        groups = key_groups(type(self))
        out = {}
        for key, value in values.items():
            group, dot, name = key.rpartition(".")
            if dot and name in known:  # ``replay.n_step``: the flat key, checked against its group
                if groups[name] != group:
                    raise ConfigError(f"config key {key!r} in {source}: {name} is a {groups[name]} setting "
                                      f"({groups[name]}.{name}); pass {groups[name]}.{name} or {name}")
                key = name
            if key not in known:
                import difflib

                close = difflib.get_close_matches(key, known, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else "; `rlblocks list` shows the keys"
                raise ConfigError(f"unknown config key {key!r} in {source}{hint}")
            out[key] = _coerce(key, value, hints[key])
        return dataclasses.replace(self, **out)


def _coerce(key: str, value: Any, kind: type) -> Any:
    """Turn ``--set`` strings (and JSON values) into the field's type."""
    if not isinstance(value, str) or kind is str:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, float) and value.is_integer():  # JSON 64.0 → 64
            return int(value)
        return value
    try:
        if kind is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            f = float(value)
            return int(f) if f.is_integer() else f
        if kind is float:
            return float(value)
        if kind is list:
            return [int(v) for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{key}={value!r} cannot be read as {kind.__name__}") from None
    return value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}``. Raises :class:`ConfigError`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} must look like key=value")
        out[key.strip()] = value.strip()
    return out


def load_config_file(path: str | Path, _seen: tuple = ()) -> dict[str, Any]:
    """Read a JSON config, resolving ``inherits`` (parents first, child wins).

    Raises:
        ConfigError: missing file, bad JSON or an inheritance cycle.
    """
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"config {path} inherits from itself")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:  # a directory, unreadable, not text
        raise ConfigError(f"config file {path} cannot be read ({e}); pass a JSON file") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    if is_run_record(data):  # a run's config.json: its resolved hyperparameters and identity
        return {"algo": data["algo"], "env_id": data["env_id"], **data["config"]}
    parents = data.pop("inherits", [])
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) and p for p in parents):
        raise ConfigError(f"config file {path}: \"inherits\" is {parents!r} but must be a list of file paths, "
                          'e.g. "inherits": ["base.json"]')
    updates = data.pop("updates", {})
    if not isinstance(updates, dict):
        raise ConfigError(f"config file {path}: \"updates\" is {updates!r} but must be an object of key: value, "
                          'e.g. "updates": {"batch_size": 512}')
    merged: dict[str, Any] = {}
    for parent in parents:
        merged.update(load_config_file(path.parent / parent, _seen + (path,)))
    merged.update(updates)
    merged.update(data)
    return merged


#: The preset data files: ``named/<name>.json`` (``--preset NAME``) and ``env/<algo>.json`` (per env id glob).
PRESETS_DIR = SHIPPED_DIR / "presets"


def named_presets() -> dict[str, dict[str, Any]]:
    """``{name: {"algos", "description", "notes", "values"}}`` of the shipped named presets."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((PRESETS_DIR / "named").glob("*.json"))}


def env_presets(algo: str) -> dict[str, dict[str, Any]]:
    """``{env id glob: values}`` of ``algo``'s per-env presets (``env/<algo>.json``; each entry's
    ``notes`` say what it is and what it measured), applied in file order; ``{}`` without a file."""
    path = PRESETS_DIR / "env" / f"{algo}.json"
    return {glob: entry["values"] for glob, entry in json.loads(path.read_text()).items()} if path.exists() else {}


def is_run_record(data: Any) -> bool:
    """Whether ``data`` is a run directory's ``config.json`` (``algo``, ``env_id``, ``seed``, ``config``,
    ``options``) rather than a config file of hyperparameters."""
    return (isinstance(data, dict) and isinstance(data.get("config"), dict) and isinstance(data.get("options"), dict)
            and "env_id" in data and "seed" in data)


#: The run options a run's ``config.json`` gives ``train --config`` as defaults (flags win), so that the
#: same command repeats the run bit for bit: the seed, the torch thread count and the schedules.
RECORD_OPTIONS = ("seed", "threads", "steps", "eval_every", "checkpoint_every")


def run_record_options(path: str | Path | None) -> dict[str, int]:
    """:data:`RECORD_OPTIONS` of the run whose ``config.json`` is ``path`` (``{}`` for any other file)."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not is_run_record(data):
        return {}
    values = {"seed": data["seed"], **data["options"]}
    return {k: values[k] for k in RECORD_OPTIONS
            if isinstance(values.get(k), int) and not isinstance(values.get(k), bool)}


def shipped_configs() -> list[str]:
    """The names of the shipped config files that describe a run, sorted (``steve/hopper/steve.json``, ...).

    Files under a ``core`` or ``envs`` folder are building blocks that others inherit, not runs,
    and are left out, as are the presets (:func:`named_presets`, :func:`env_presets`); those under ``algos`` name an algorithm and a value target but no env (pass
    ``--env``, e.g. to sweep one arm over several envs).
    """
    parts_only = {"core", "envs", "presets"}
    return sorted(p.relative_to(SHIPPED_DIR).as_posix() for p in SHIPPED_DIR.rglob("*.json")
                  if not parts_only & set(p.relative_to(SHIPPED_DIR).parts[:-1]))


def find_config_file(name: str | Path) -> Path:
    """The config file ``--config name`` means: the local file ``name`` if it exists, else the shipped
    one of that name (``.json`` may be left off), e.g. ``steve/hopper/steve.json``.

    Raises:
        ConfigError: neither exists (naming close shipped names and ``rlblocks list``).
    """
    path = Path(name)
    if path.exists():
        return path
    for candidate in (SHIPPED_DIR / path, SHIPPED_DIR / f"{path}.json"):
        if not path.is_absolute() and candidate.is_file():
            return candidate
    import difflib

    close = difflib.get_close_matches(str(name), shipped_configs(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `rlblocks list` shows the shipped configs"
    raise ConfigError(f"config file {name} does not exist here nor among the shipped configs{hint}")


#: Config-file keys that name the run rather than a hyperparameter: ``(flag, keys)``.
_IDENTITY = {"algo": ("--algo", ("algo",)), "env": ("--env", ("env", "env_id"))}


def run_identity(values: dict[str, Any], source: str | Path, **flags: str | None) -> dict[str, str]:
    """The run's ``algo`` and ``env`` from the command-line flags and the config file's values.

    Args:
        values: the merged config file (:func:`load_config_file`); ``{}`` without a file.
        source: the file's name, for messages.
        flags: ``algo=`` and ``env=``: the flags' values (``None``: not given). A flag may hold a
            comma-separated list (``rlblocks sweep``); with a file naming the key, every entry
            must equal the file's value.

    Returns:
        ``{"algo": ..., "env": ...}``, the flag's value where the file names none.

    Raises:
        ConfigError: a flag that differs from the file's value, a file value that is not a
            string, or a key named by neither.
    """
    out = {}
    for key, given in flags.items():
        flag, keys = _IDENTITY[key]
        named = [(k, values[k]) for k in keys if k in values]
        if named and not all(isinstance(v, str) and v for _, v in named):
            raise ConfigError(f"config file {source}: {named[0][0]}={named[0][1]!r} must be a name such as "
                              f"{'sac' if key == 'algo' else 'Hopper-v5'}")
        if len({v for _, v in named}) > 1:
            raise ConfigError(f"config file {source} names two {key}s ({named[0][1]} and {named[1][1]}); keep one")
        from_file = named[0][1] if named else None
        if (given is not None and from_file is not None
                and {g.strip() for g in str(given).split(",") if g.strip()} != {from_file}):
            raise ConfigError(f"{flag} {given} conflicts with \"{named[0][0]}\": \"{from_file}\" in config "
                              f"{source}; drop {flag} or pass another config")
        value = given if given is not None else from_file
        if value is None:
            raise ConfigError(f"{flag} is required: pass {flag} NAME or a --config file that names "
                              f"\"{keys[0]}\"")
        out[key] = value
    return out
