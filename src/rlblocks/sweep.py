"""Experiment sets: an algo × env × seed grid run as separate processes on this machine.

Layout of a sweep directory::

    <sweep>/sweep.json                     the grid, the shared options and each run's last status
    <sweep>/<algo>/<env>/seed<S>/          an ordinary run directory (see :mod:`rlblocks.run`)
    <sweep>/<algo>/<env>/seed<S>/train.log that run's stdout and stderr (appended across sessions)

Each run is ``python -m rlblocks train ... --no-progress`` (or ``rlblocks resume`` when the run
has a checkpoint); ``jobs`` of them run at a time. Re-running the same sweep command skips finished
runs (final checkpoint at ``>= steps`` env steps and final evaluation written) and resumes the others,
so an interrupted sweep is continued by repeating its command. Every check on user input
(algorithms, env ids, seeds, hyperparameters, action spaces, jobs) happens before any run starts.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlblocks.errors import ConfigError, RLBlocksError
from rlblocks.rundir import finished_steps

SWEEP_FILE = "sweep.json"
LOG_NAME = "train.log"
#: Exit statuses of a run that saved a checkpoint and stopped on SIGINT (130) or SIGTERM (143).
STOPPED_CODES = (130, 143)


# ----------------------------------------------------------------------------- parsing
def parse_seeds(spec: str) -> list[int]:
    """Parse a seed spec: ``"0-7"`` (inclusive range), ``"0,2,5"``, ``"3"`` or mixes (``"0-3,8"``).

    Returns the seeds in the given order without duplicates.

    Raises:
        ConfigError: an empty spec, a non-integer, a negative seed or a descending range.
    """
    seeds: list[int] = []
    text = str(spec).strip()
    if not text:
        raise ConfigError("--seeds is empty; give e.g. 0-7, 0,2,5 or 3")
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            if sep:
                a, b = int(lo), int(hi)
                if a > b:
                    raise ConfigError(f"--seeds range {part!r} is descending; write it as {b}-{a}")
                values = range(a, b + 1)
            else:
                values = [int(part)]
        except ValueError:
            raise ConfigError(f"--seeds {spec!r} is not a seed list: {part!r} is not an integer or a range "
                              "like 0-7 (use e.g. 0-7, 0,2,5 or 3)") from None
        for s in values:
            if s < 0:
                raise ConfigError(f"--seeds {spec!r}: seeds must be >= 0")
            if s not in seeds:
                seeds.append(s)
    return seeds


def parse_names(text: str, flag: str) -> list[str]:
    """Split a comma-separated list (``"sac,td3"``), dropping blanks and duplicates.

    Raises:
        ConfigError: the list is empty.
    """
    out: list[str] = []
    for name in str(text).split(","):
        name = name.strip()
        if name and name not in out:
            out.append(name)
    if not out:
        raise ConfigError(f"{flag} {text!r} names nothing; give one or more comma-separated names")
    return out


def _safe(name: str) -> str:
    """A path component for an env id (namespaced ids such as ``ALE/Pong-v5`` contain ``/``)."""
    return name.replace("/", "-").replace(os.sep, "-")


# ----------------------------------------------------------------------------- planning
@dataclass
class SweepRun:
    """One cell of the grid and what to do with it (``new``, ``restart``, ``resume`` or ``done``)."""

    algo: str
    env_id: str
    seed: int
    run_dir: Path
    action: str = "new"
    steps_done: int = 0

    @property
    def log(self) -> Path:
        """The run's ``train.log`` (stdout and stderr of every session)."""
        return self.run_dir / LOG_NAME

    @property
    def label(self) -> str:
        """``algo env seedS`` for progress lines."""
        return f"{self.algo} {self.env_id} seed{self.seed}"


@dataclass
class SweepPlan:
    """A validated sweep: the grid, shared options and one :class:`SweepRun` per cell."""

    root: Path
    algos: list[str]
    envs: list[str]
    seeds: list[int]
    steps: int
    eval_every: int | None  # None: each algorithm's default
    checkpoint_every: int
    overrides: dict[str, str]
    device: str = "auto"
    jobs: int = 1
    config_file: Path | None = None  # --config, resolved to a file (local or shipped), passed to every run
    #: ``local``: runs are processes of this machine; ``ray``: Ray tasks (``rlblocks.distributed.sweep``)
    backend: str = "local"
    ray_address: str | None = None
    resolved_overrides: dict[str, Any] = field(default_factory=dict)  # typed values, compared on re-runs
    runs: list[SweepRun] = field(default_factory=list)

    @property
    def todo(self) -> list[SweepRun]:
        """The runs that need a process (everything not already ``done``)."""
        return [r for r in self.runs if r.action != "done"]


def _config_hash(overrides: dict[str, Any]) -> str:
    blob = json.dumps(overrides, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:8]


def default_sweep_dir(algos: list[str], envs: list[str], overrides: dict[str, Any], root: str = "sweeps") -> Path:
    """``sweeps/<algo+algo>_<env+env>_<hash of the --set overrides>``.

    The hash covers only the hyperparameter overrides (not seeds or steps), so asking for more
    seeds or more steps with the same settings continues the same sweep.
    """
    return Path(root) / f"{'+'.join(algos)}_{'+'.join(_safe(e) for e in envs)}_{_config_hash(overrides)}"


def checkpoint_steps(run_dir: Path) -> int | None:
    """Env steps of a run's latest checkpoint (from its ``meta.json``); ``None`` if it has none."""
    from rlblocks.checkpoint import latest_checkpoint
    from rlblocks.errors import CheckpointError

    try:
        ckpt = latest_checkpoint(run_dir)
    except CheckpointError:
        return None
    try:
        return int(json.loads((ckpt / "meta.json").read_text())["env_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0  # unreadable: resume and let `rlblocks resume` report the corrupt checkpoint


def _classify(run: SweepRun, steps: int) -> None:
    """Set ``run.action`` from what its directory holds; check it is the run the grid expects."""
    config = run.run_dir / "config.json"
    if not config.exists():
        run.action = "new"
        return
    try:
        record = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError):
        record = None
    if not isinstance(record, dict) or (record.get("algo"), record.get("env_id"), record.get("seed")) != (
            run.algo, run.env_id, run.seed):
        raise RLBlocksError(f"{run.run_dir} holds another run ({config} does not say algo={run.algo}, "
                            f"env_id={run.env_id}, seed={run.seed}); move it away or pass another --sweep-dir")
    done = checkpoint_steps(run.run_dir)
    if done is None:  # stopped before its first checkpoint: start it again
        run.action, run.steps_done = "restart", 0
    elif done >= steps and finished_steps(run.run_dir) == done:
        run.action, run.steps_done = "done", done
    else:
        run.action, run.steps_done = "resume", done


def plan_sweep(algos: str | list[str] | None, envs: str | list[str] | None, seeds: str | list[int], *,
               steps: int = 100_000, sweep_dir: str | Path | None = None, overrides: dict[str, str] | None = None,
               eval_every: int | None = None, checkpoint_every: int = 50_000, jobs: int | None = None,
               device: str = "auto", config_file: str | None = None, backend: str = "local",
               ray_address: str | None = None) -> SweepPlan:
    """Validate a sweep and decide, per run, whether to train, resume or skip it.

    Nothing is written. ``algos``/``envs`` are lists or comma-separated strings; ``seeds`` a list
    or a spec for :func:`parse_seeds`; ``overrides`` the ``--set`` pairs (applied to every run);
    ``config_file`` a JSON file or shipped config name given to every run (``--config``): when it
    names ``algo``/``env``, ``algos``/``envs`` may be ``None`` (given, they must agree with it).
    The config's values count as settings of the sweep (its directory's hash, the re-run check).
    ``jobs``: runs at a time (default 1; with ``backend="ray"`` every run is submitted and Ray runs
    as many as the cluster's CPUs allow, one CPU each, unless ``jobs`` caps them).

    Raises:
        RLBlocksError: an unknown algorithm or env id, a bad seed spec, ``jobs < 1``, a
            non-positive ``steps``, an unavailable device, an invalid hyperparameter, an algorithm
            that cannot act in an env, a missing config file or one that conflicts with
            ``algos``/``envs``, or a sweep directory made with other ``--config``/``--set`` values.
    """
    from rlblocks.config import load_config_file
    from rlblocks.run import check_seed, make_request, resolve_run

    joined = {k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in (("a", algos), ("e", envs))}
    algos, envs, config_path = resolve_run(joined["a"], joined["e"], config_file)
    algo_list = parse_names(algos, "--algo") if isinstance(algos, str) else list(dict.fromkeys(algos))
    env_list = parse_names(envs, "--env") if isinstance(envs, str) else list(dict.fromkeys(envs))
    seed_list = parse_seeds(seeds) if isinstance(seeds, str) else list(dict.fromkeys(int(s) for s in seeds))
    if not algo_list or not env_list or not seed_list:
        raise ConfigError("a sweep needs at least one algorithm, one env and one seed")
    if backend not in ("local", "ray"):
        raise ConfigError(f"--backend {backend!r} is not one of local, ray")
    if backend == "local" and ray_address is not None:
        raise ConfigError("--ray-address needs --backend ray (the default backend runs the sweep on this machine)")
    if backend == "ray":
        from rlblocks.distributed.session import check_address, require_ray

        require_ray()
        check_address(ray_address)
    if jobs is not None and int(jobs) < 1:
        raise ConfigError(f"--jobs {jobs} must be >= 1")
    for seed in seed_list:
        check_seed(seed)
    overrides = dict(overrides or {})
    normalized: dict[str, Any] = {}
    file_keys: list[str] = []
    if config_path is not None:
        normalized["config"] = str(config_file)
        file_values = load_config_file(config_path)
        normalized.update({k: file_values[k] for k in ("preset",) if k in file_values})
        file_keys = [k for k in file_values if k not in ("algo", "env", "env_id", "seed", "description", "preset")]
    for algo in algo_list:
        for env_id in env_list:  # every check `rlblocks train` makes, once per cell (the seeds are checked above)
            cfg = make_request(algo, env_id, steps=steps, seed=seed_list[0], config_file=config_file,
                               overrides=overrides, eval_every=eval_every, checkpoint_every=checkpoint_every,
                               device=device, threads=1).cfg
            # flat key names: ``replay.n_step=3`` and ``n_step=3`` are one sweep
            normalized.update({k.rpartition(".")[2]: getattr(cfg, k.rpartition(".")[2]) for k in (*file_keys, *overrides)})
    root = Path(sweep_dir) if sweep_dir is not None else default_sweep_dir(algo_list, env_list, normalized)
    if root.exists() and not root.is_dir():
        raise RLBlocksError(f"--sweep-dir {root} is a file; pass a directory")
    resolved = json.loads(json.dumps(normalized, default=str))
    previous = _read_sweep_file(root)
    if previous is not None and previous.get("resolved_overrides", {}) != resolved:
        was = " ".join(f"{k}={v}" for k, v in previous.get("overrides", {}).items()) or "(none)"
        config = previous.get("resolved_overrides", {}).get("config")
        was = (f"--config {config} " if config else "") + f"--set {was}"
        raise RLBlocksError(f"{root} was made with {was}; repeat those values to continue it or pass "
                            "another --sweep-dir")
    n_runs = len(algo_list) * len(env_list) * len(seed_list)
    jobs = int(jobs) if jobs is not None else (n_runs if backend == "ray" else 1)
    plan = SweepPlan(root, algo_list, env_list, seed_list, int(steps), eval_every, int(checkpoint_every),
                     overrides, device, jobs, config_path, backend, ray_address, resolved)
    # Seed-major order: a sweep stopped early has the same seeds for every algorithm and env.
    for seed in seed_list:
        for env_id in env_list:
            for algo in algo_list:
                run = SweepRun(algo, env_id, seed, root / algo / _safe(env_id) / f"seed{seed}")
                _classify(run, plan.steps)
                plan.runs.append(run)
    return plan


def _read_sweep_file(root: Path) -> dict | None:
    path = root / SWEEP_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RLBlocksError(f"{path} is corrupt ({e}); delete it (the runs are kept) and run the sweep again") from None
    return data if isinstance(data, dict) else None


# ----------------------------------------------------------------------------- running
def run_command(plan: SweepPlan, run: SweepRun) -> list[str]:
    """The ``python -m rlblocks ...`` command line that trains or resumes ``run``."""
    base = [sys.executable, "-m", "rlblocks"]
    if run.action == "resume":
        return base + ["resume", str(run.run_dir), "--steps", str(plan.steps), "--device", plan.device,
                       "--no-progress"]
    # new runs and runs stopped before their first checkpoint: `train --resume` creates the run or,
    # under the run's lock, trains it again from step 0
    cmd = base + ["train", "--algo", run.algo, "--env", run.env_id, "--seed", str(run.seed),
                  "--steps", str(plan.steps), "--run-dir", str(run.run_dir),
                  "--checkpoint-every", str(plan.checkpoint_every), "--device", plan.device, "--no-progress",
                  "--resume"]
    if plan.eval_every is not None:  # else each algorithm's default
        cmd += ["--eval-every", str(plan.eval_every)]
    if plan.config_file is not None:
        cmd += ["--config", str(plan.config_file.resolve())]
    if plan.overrides:
        cmd += ["--set", *(f"{k}={v}" for k, v in plan.overrides.items())]
    return cmd


def _threads_per_run(jobs: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // jobs)


def _child_env(jobs: int) -> dict[str, str]:
    """The environment of a run: unbuffered output and ``cpus // jobs`` torch threads each.

    Without a thread limit every run starts one torch thread per core and ``jobs`` runs fight for
    the same cores (small-MLP updates then slow down several times). ``OMP_NUM_THREADS`` set by
    the user wins.
    """
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    threads = str(_threads_per_run(jobs))
    env.setdefault("OMP_NUM_THREADS", threads)
    env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])
    return env


def _last_score(run_dir: Path) -> str:
    path = run_dir / "eval.csv"
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        return f", eval {float(lines[-1].split(',')[3]):.1f}" if len(lines) > 1 else ""
    except (OSError, ValueError, IndexError):
        return ""


def _tail(path: Path, n: int = 1) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[:300]


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: run labels per outcome and whether it was interrupted."""

    finished: list[SweepRun] = field(default_factory=list)
    skipped: list[SweepRun] = field(default_factory=list)
    failed: list[SweepRun] = field(default_factory=list)
    stopped: list[SweepRun] = field(default_factory=list)
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        """0 when every run reached its steps, 130 after Ctrl-C, 1 if any run failed or stopped."""
        if self.interrupted:
            return 130
        return 1 if self.failed or self.stopped else 0


def _write_sweep_file(plan: SweepPlan, status: dict[Path, dict], command: list[str] | None) -> None:
    """Write ``sweep.json``, merging the grid of earlier invocations (more seeds, envs, algos)."""
    from rlblocks.checkpoint import atomic_write_text

    previous = _read_sweep_file(plan.root) or {}
    now = _dt.datetime.now().isoformat(timespec="seconds")

    def union(key, new):
        return list(dict.fromkeys(list(previous.get(key, [])) + list(new)))

    runs = {r["dir"]: r for r in previous.get("runs", []) if isinstance(r, dict) and "dir" in r}
    for run in plan.runs:
        rel = run.run_dir.relative_to(plan.root).as_posix()
        entry = {"algo": run.algo, "env_id": run.env_id, "seed": run.seed, "dir": rel,
                 "log": f"{rel}/{LOG_NAME}"}
        entry.update(status.get(run.run_dir, {}))
        runs[rel] = {**runs.get(rel, {}), **entry}
    data = {
        "format": 1,
        "algos": union("algos", plan.algos), "envs": union("envs", plan.envs), "seeds": union("seeds", plan.seeds),
        "steps": plan.steps, "eval_every": plan.eval_every, "checkpoint_every": plan.checkpoint_every,
        "overrides": plan.overrides, "resolved_overrides": plan.resolved_overrides,
        "created": previous.get("created", now), "updated": now,
        "command": " ".join(command) if command else previous.get("command"),
        "runs": sorted(runs.values(), key=lambda r: (r["algo"], r["env_id"], r["seed"])),
    }
    atomic_write_text(plan.root / SWEEP_FILE, json.dumps(data, indent=2))


def _prepare(run: SweepRun) -> None:
    """Make the run directory (for its log); a ``restart`` is cleared by ``train --resume`` under the run's lock."""
    run.run_dir.mkdir(parents=True, exist_ok=True)


def run_sweep(plan: SweepPlan, progress: bool = True, command: list[str] | None = None,
              poll_s: float = 0.2) -> SweepResult:
    """Run every unfinished run of ``plan``, ``plan.jobs`` processes at a time.

    Prints one line per finished run (with its log path on failure) above a tqdm bar over the
    runs, and keeps ``sweep.json`` up to date after each run. The first Ctrl-C (or SIGTERM) asks
    every running process to checkpoint and stop (the same as Ctrl-C on ``rlblocks train``) and
    waits for them; a second one kills them. Repeating the sweep command continues it.
    ``plan.backend == "ray"`` runs them as Ray tasks (:mod:`rlblocks.distributed.sweep`) in a local
    Ray or the cluster at ``plan.ray_address``.
    """
    plan.root.mkdir(parents=True, exist_ok=True)
    result = SweepResult(skipped=[r for r in plan.runs if r.action == "done"])
    status: dict[Path, dict] = {r.run_dir: {"status": "done", "env_steps": r.steps_done} for r in result.skipped}
    todo = plan.todo
    for run in todo:
        status[run.run_dir] = {"status": "pending"}
    _write_sweep_file(plan, status, command)
    counts = {a: sum(r.action == a for r in plan.runs) for a in ("new", "restart", "resume", "done")}
    print(f"sweep {plan.root}: {len(plan.runs)} runs ({len(plan.algos)} algos × {len(plan.envs)} envs × "
          f"{len(plan.seeds)} seeds) to {plan.steps} steps: {counts['new']} new, {counts['resume']} to resume, "
          f"{counts['restart']} to restart, {counts['done']} already finished; {plan.jobs} at a time", flush=True)
    if not todo:
        return result

    if plan.backend == "ray":
        from rlblocks.distributed.session import ray_session

        with ray_session(plan.ray_address):
            return _run_all(plan, todo, result, status, progress, command, poll_s)
    return _run_all(plan, todo, result, status, progress, command, poll_s)


def _launcher(plan: SweepPlan):
    """``launch(cmd, log file) -> process``: a local subprocess, or a Ray task (:class:`rlblocks.distributed.sweep.RayRun`)."""
    if plan.backend != "ray":
        env = _child_env(plan.jobs)
        return lambda cmd, fh: subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                env=env, start_new_session=True)  # our Ctrl-C handler decides
    from rlblocks.distributed.session import worker_env
    from rlblocks.distributed.sweep import RayRun, gpus_per_run

    gpus, cwd = gpus_per_run(plan.device), os.getcwd()
    env = {**worker_env(), "PYTHONUNBUFFERED": "1"}  # one torch thread per run: it holds one CPU
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[key] = os.environ.get(key, env[key])
    return lambda cmd, fh: RayRun(cmd, fh.name, env, cwd, cpus=1.0, gpus=gpus)


def _run_all(plan: SweepPlan, todo: list[SweepRun], result: SweepResult, status: dict[Path, dict], progress: bool,
             command: list[str] | None, poll_s: float) -> SweepResult:
    from tqdm import tqdm

    launch = _launcher(plan)
    pending = list(todo)
    active: dict[Any, tuple[SweepRun, Any, float]] = {}  # subprocess.Popen or RayRun
    bar = tqdm(total=len(todo), unit="run", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    done_count = 0

    def start(run: SweepRun) -> None:
        _prepare(run)
        cmd = run_command(plan, run)
        fh = open(run.log, "a")  # noqa: SIM115 -- open while the process runs, closed in finish()
        fh.write(f"=== {_dt.datetime.now().isoformat(timespec='seconds')} {' '.join(cmd)}\n")
        fh.flush()
        proc = launch(cmd, fh)
        active[proc] = (run, fh, time.time())
        status[run.run_dir] = {"status": "running"}

    def finish(proc) -> None:
        nonlocal done_count
        run, fh, t0 = active.pop(proc)
        fh.close()
        done_count += 1
        secs = time.time() - t0
        reached = checkpoint_steps(run.run_dir) or 0
        prefix = f"[{done_count}/{len(todo)}] {run.label}"
        if proc.returncode not in (0, *STOPPED_CODES):
            result.failed.append(run)
            status[run.run_dir] = {"status": "failed", "returncode": proc.returncode, "env_steps": reached}
            last = _tail(run.log)
            bar.write(f"{prefix} FAILED (exit {proc.returncode}) after {secs:.0f}s; log: {run.log}"
                      + (f"\n    {last}" if last else ""), file=sys.stdout)
        elif reached < plan.steps:
            result.stopped.append(run)
            status[run.run_dir] = {"status": "stopped", "env_steps": reached}
            bar.write(f"{prefix} stopped at {reached} steps after {secs:.0f}s; log: {run.log}", file=sys.stdout)
        else:
            result.finished.append(run)
            status[run.run_dir] = {"status": "done", "env_steps": reached}
            verb = "resumed and finished" if run.action == "resume" else "finished"
            bar.write(f"{prefix} {verb} at {reached} steps in {secs:.0f}s{_last_score(run.run_dir)}", file=sys.stdout)
        bar.update(1)
        _write_sweep_file(plan, status, command)

    def on_signal(signum, frame):  # Ctrl-C, `kill` / a job scheduler: stop the runs, orphan none
        raise KeyboardInterrupt

    # SIGINT too, explicitly: a shell starts background jobs with SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler, so `kill -INT` would not reach the runs (as train handles it)
    try:
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        previous = {}
    try:
        while pending or active:
            while pending and len(active) < plan.jobs:
                start(pending.pop(0))
            for proc in [p for p in active if p.poll() is not None]:
                finish(proc)
            time.sleep(poll_s)
    except KeyboardInterrupt:
        result.interrupted = True
        bar.write(f"\nstopping: asking {len(active)} running runs to checkpoint and stop "
                  "(press again to kill them)", file=sys.stderr)
        for proc in active:
            proc.send_signal(signal.SIGINT)
        try:
            while active:
                for proc in [p for p in active if p.poll() is not None]:
                    finish(proc)
                time.sleep(poll_s)
        except KeyboardInterrupt:
            for proc, (run, fh, _) in list(active.items()):
                proc.kill()
                proc.wait()
                fh.close()
                status[run.run_dir] = {"status": "killed"}
            active.clear()
        for run in pending:
            status[run.run_dir] = {"status": "pending"}
        _write_sweep_file(plan, status, command)
    finally:
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return result


def report(result: SweepResult, plan: SweepPlan) -> str:
    """A closing summary: counts, and each failed or stopped run with its log path."""
    parts = [f"{len(result.finished)} finished", f"{len(result.skipped)} skipped (already finished)"]
    if result.stopped:
        parts.append(f"{len(result.stopped)} stopped early")
    if result.failed:
        parts.append(f"{len(result.failed)} failed")
    lines = [f"sweep {plan.root}: " + ", ".join(parts)]
    for run in result.failed:
        lines.append(f"  failed: {run.label}: see {run.log}")
    for run in result.stopped:
        lines.append(f"  stopped: {run.label}: see {run.log}")
    if result.interrupted or result.stopped or result.failed:
        lines.append("  run the same `rlblocks sweep` command again to resume unfinished runs")
    lines.append(f"  plot: rlblocks plot {plan.root}")
    return "\n".join(lines)
