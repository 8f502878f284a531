"""Command line: ``rlblocks {train,resume,eval,sweep,plot,list}``.

Every user error ends with one line on stderr (``rlblocks: error: ...``) and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields

from rlblocks import toy_demo
from rlblocks.errors import RLBlocksError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlblocks", description="Modular deep RL: train, resume, evaluate.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an agent")
    t.add_argument("--algo", default=None, help="algorithm (see `rlblocks list`); may come from --config")
    t.add_argument("--env", default=None, help="gymnasium env id, e.g. HalfCheetah-v5; may come from --config")
    t.add_argument("--steps", type=int, default=None,
                   help="total env steps (default 100000, or the run's with --config RUN/config.json)")
    t.add_argument("--seed", type=int, default=None, help="default 0, or the run's with --config RUN/config.json")
    t.add_argument("--num-envs", type=int, default=None, help="parallel envs (config key num_envs)")
    t.add_argument("--async-envs", action="store_true", help="step envs in subprocesses (vector_mode=async)")
    t.add_argument("--run-dir", default=None, help="default: runs/<algo>/<env>/<hash>-seed<S>")
    t.add_argument("--config", default=None, metavar="FILE",
                   help="JSON config file (may `inherits` parents, name algo and env), or a shipped config "
                        "such as steve/hopper/steve.json (`rlblocks list`)")
    t.add_argument("--preset", default=None, metavar="NAME", help="named hyperparameter preset (`rlblocks list`)")
    t.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="override config keys")
    t.add_argument("--eval-every", type=int, default=None,
                   help="env steps between evaluations (0: off; default per algorithm: `rlblocks list`)")
    t.add_argument("--checkpoint-every", type=int, default=None,
                   help="env steps between checkpoints (0: end only; default 50000)")
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    existing = t.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue the run in --run-dir if there is one")
    existing.add_argument("--overwrite", action="store_true", help="delete an existing run in --run-dir first")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: OMP_NUM_THREADS, else the cores other processes leave free when the "
                        "run first starts; recorded in config.json and kept on resume)")
    _backend_arguments(t)
    t.add_argument("--load", default=None, metavar="RUN_DIR",
                   help="start from another run's trained weights (policy, critic, normaliser; not optimizers, "
                        "replay or counters); same algo and observation/action shapes")

    r = sub.add_parser("resume", help="continue a run from its latest checkpoint")
    r.add_argument("run_dir")
    r.add_argument("--steps", type=int, default=None, help="total env steps of the run (default: as first asked)")
    r.add_argument("--device", default="auto")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--threads", type=int, default=None, help="torch threads (default: the count the run started with)")
    r.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="a --backend ray run: join the Ray cluster at ADDR (default: start a local Ray)")

    e = sub.add_parser("eval", help="evaluate a run's latest checkpoint")
    e.add_argument("run_dir")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--deterministic", action="store_true", help="act with the policy's mode (no sampling)")
    e.add_argument("--video", default=None, metavar="PATH.mp4",
                   help="record episodes to PATH-episode-<k>.mp4 (headless rendering)")
    e.add_argument("--video-episodes", type=int, default=1, help="episodes recorded with --video (default 1)")
    e.add_argument("--video-length", type=int, default=500,
                   help="frames recorded per episode with --video (default 500; 0: whole episodes)")
    e.add_argument("--render", action="store_true", help="show a window (needs a display)")
    e.add_argument("--seed", type=int, default=None)
    e.add_argument("--device", default="auto")

    w = sub.add_parser("sweep", help="run an algo × env × seed grid, J runs at a time (re-run to resume)")
    w.add_argument("--algo", default=None, help="algorithms, comma-separated: sac,td3 (may come from --config)")
    w.add_argument("--env", default=None, help="env ids, comma-separated: Pendulum-v1,HalfCheetah-v5 (may come "
                   "from --config)")
    w.add_argument("--config", default=None, metavar="FILE",
                   help="JSON config file or shipped config name for every run (as `rlblocks train --config`)")
    w.add_argument("--seeds", default="0", help="0-7, 0,2,5 or 3 (default 0)")
    w.add_argument("--steps", type=int, default=100_000, help="total env steps per run (default 100000)")
    w.add_argument("--jobs", type=int, default=None,
                   help="runs at a time (default 1; --backend ray: all, as many running as Ray has CPUs)")
    w.add_argument("--sweep-dir", default=None, help="default: sweeps/<algos>_<envs>_<hash of --set>")
    w.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override config keys in every run")
    w.add_argument("--eval-every", type=int, default=None,
                   help="env steps between evaluations (0: off; default per algorithm: `rlblocks list`)")
    w.add_argument("--checkpoint-every", type=int, default=50_000, help="env steps between checkpoints (0: end only)")
    w.add_argument("--device", default="auto", help="auto, cpu or cuda (for every run)")
    w.add_argument("--no-progress", action="store_true", help="no progress bar over runs")
    w.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: runs are processes of this machine (default); ray: Ray tasks, one CPU each")
    w.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="--backend ray: join the Ray cluster at ADDR (default: start a local Ray)")

    pl = sub.add_parser("plot", help="learning curves (mean ± standard error over seeds) and a summary table")
    pl.add_argument("sweep_dir", help="a directory made by `rlblocks sweep` (or any directory of runs)")
    pl.add_argument("--out", default=None, metavar="FIG.png", help="figure path (default <sweep_dir>/<metric>.png)")
    pl.add_argument("--metric", choices=("eval", "train", "success"), default="eval",
                    help="eval: eval.csv score vs frames; train: progress.csv train_return vs steps; "
                    "success: eval.csv success vs frames (goal envs)")

    sub.add_parser("list", help="algorithms and their key hyperparameters")
    toy_demo.add_arguments(sub.add_parser("toy-demo", help="STEVE's 100-state chain: Q-learning, MVE, STEVE Q errors"))
    return p


def _backend_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: everything in this process (default); ray: the distributed layout on Ray "
                        "(rollout workers for PPO, asynchronous interactors and an evaluator actor off-policy)")
    p.add_argument("--workers", type=int, default=None, help="--backend ray: rollout workers / interactors (default 1)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="--backend ray: join the Ray cluster at ADDR (default: start a local Ray, shut down at the end)")


def _sweep(args, argv: list[str] | None) -> int:
    from rlblocks import sweep
    from rlblocks.config import parse_overrides

    plan = sweep.plan_sweep(args.algo, args.env, args.seeds, steps=args.steps, sweep_dir=args.sweep_dir,
                            overrides=parse_overrides(args.set), eval_every=args.eval_every,
                            checkpoint_every=args.checkpoint_every, jobs=args.jobs, device=args.device,
                            config_file=args.config, backend=args.backend, ray_address=args.ray_address)
    command = ["rlblocks", *(sys.argv[1:] if argv is None else argv)]
    result = sweep.run_sweep(plan, progress=not args.no_progress, command=command)
    print(sweep.report(result, plan))
    return result.exit_code


def _plot(args) -> None:
    from rlblocks.plot import plot_sweep

    fig, md, csv = plot_sweep(args.sweep_dir, args.out, args.metric)
    print(md.read_text(), end="")
    print(f"figure {fig}\ntables {md} {csv}")


def _list() -> None:
    from rlblocks.config import SHIPPED_DIR, key_groups, load_config_file, shipped_configs
    from rlblocks.registry import ALGOS, NAMED_PRESETS

    for spec in ALGOS.values():
        print(f"{spec.name:6s} {spec.summary}  [{spec.action_space} actions; evaluates every {spec.eval_every} "
              "steps by default]")
        default = spec.config_cls()
        groups = key_groups(spec.config_cls)
        for group in dict.fromkeys(groups.values()):  # grouped by the module they configure (--set group.key)
            print(f"  {group}:")
            for f in fields(default):
                if groups[f.name] == group:
                    print(f"    {f.name:24s} {getattr(default, f.name)!s:12s} {f.metadata.get('help', '')}")
        for pattern, values in spec.presets.items():
            print(f"    preset {pattern}: {values}")
        print()
    print("named presets (--preset NAME):")
    for name, (algos, values, what) in NAMED_PRESETS.items():
        print(f"  {name:10s} {what}  [{', '.join(algos)}]")
        print(f"             {values}")
    print("\nshipped configs (--config NAME; `inherits` resolved):")
    for name in shipped_configs():
        values = load_config_file(SHIPPED_DIR / name)
        what = values.pop("description", "")
        ident = f"{values.get('algo', '?')} on {values.get('env', '--env ENV')}"
        print(f"  {name:34s} {ident:33s} {what}")


def _raise_interrupted(signum, frame):
    """SIGTERM before training starts (or a second one during it): stop like Ctrl-C, unsaved."""
    from rlblocks.errors import Interrupted

    raise Interrupted(signum, saved=False)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, 2 for a user error, 130/143 after a signal)."""
    import signal

    from rlblocks.errors import Interrupted

    args = _parser().parse_args(argv)
    previous_term = None
    if args.command in ("train", "resume", "eval"):
        try:  # SIGTERM during start-up cleans up as Ctrl-C does (training installs its own handler)
            previous_term = signal.signal(signal.SIGTERM, _raise_interrupted)
        except ValueError:  # not the main thread
            pass
    try:
        if args.command == "list":
            _list()
            return 0
        if args.command == "sweep":
            return _sweep(args, argv)
        if args.command == "toy-demo":
            return toy_demo.cli(args)
        if args.command == "plot":
            _plot(args)
            return 0
        from rlblocks import run
        from rlblocks.config import parse_overrides

        if args.command == "train":
            overrides = parse_overrides(args.set)
            if args.num_envs is not None:
                overrides["num_envs"] = args.num_envs
            if args.async_envs:
                overrides["vector_mode"] = "async"
            run.train(args.algo, args.env, steps=args.steps, seed=args.seed, run_dir=args.run_dir,
                      config_file=args.config, overrides=overrides, eval_every=args.eval_every,
                      checkpoint_every=args.checkpoint_every, device=args.device, resume=args.resume,
                      overwrite=args.overwrite, progress=not args.no_progress, load=args.load, threads=args.threads,
                      preset=args.preset, backend=args.backend, workers=args.workers, ray_address=args.ray_address)
        elif args.command == "resume":
            run.resume_run(args.run_dir, args.steps, device=args.device, progress=not args.no_progress,
                           threads=args.threads, ray_address=args.ray_address)
        elif args.command == "eval":
            if args.video:
                os.environ.setdefault("MUJOCO_GL", "egl")
            if args.render and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
                raise RLBlocksError("--render needs a display (none found); use --video out.mp4 instead")
            successes: list[float] = []
            returns = run.evaluate_run(args.run_dir, args.episodes, args.deterministic, args.video,
                                       args.render, args.seed, args.device, video_length=args.video_length,
                                       video_episodes=args.video_episodes, successes=successes)
            import numpy as np

            rate = f", success {np.mean(successes):.2f} ({len(successes)} episodes)" if successes else ""
            print(f"return {np.mean(returns):.2f} ± {np.std(returns):.2f} over {len(returns)} episodes{rate}")
            if args.video:
                from pathlib import Path

                video = Path(args.video)
                written = sorted(video.parent.glob(f"{video.stem}-episode-*.mp4"))
                print(f"videos: {', '.join(map(str, written))}" if written else f"no video written next to {video}")
    except RLBlocksError as e:
        print(f"rlblocks: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk (or a file-size limit) while writing the run directory
        from rlblocks.errors import write_failure

        line = write_failure(e)
        if line is None:
            raise
        print(f"rlblocks: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C / SIGTERM: training saved and said so; say it for a start-up
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        if not (isinstance(e, Interrupted) and e.saved):
            print(f"rlblocks: interrupted ({signal.Signals(signum).name}); nothing was saved since the last checkpoint",
                  file=sys.stderr)
        return 128 + signum
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    return 0


if __name__ == "__main__":
    sys.exit(main())
