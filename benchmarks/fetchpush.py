"""FetchPush-v4 at 300,000 env steps (issue 13): DDPG + HER variants against mrl's ≈ 1.0 success, and
SAC + HER side by side with Stable-Baselines3's ``HerReplayBuffer``.

The arms (30 greedy evaluation episodes every 20,000 steps, one torch thread per run):

- ``sb3_sac_her`` / ``sac_her``: ``benchmarks/her_sb3.py`` with ``--impls sb3`` / ``rlblocks`` (its same
  settings on both sides: SAC, 256×256, batch 256, lr 1e-3, gamma 0.98, Polyak 0.005, HER future_4, one
  update per env step). Seed 0, the issue's side-by-side run; both run at once, one per core, so the
  wall times (whole processes, ``job.json``) are measured under the same load.
- ``sac_her_noclip``: the normaliser (mrl's eps 1e-8) with unclipped targets, SAC's goal-env defaults
  in session 15 (``sac_her`` clipped them to [-50, 0] and stayed at chance).
- ``sac_her_raw``: ``sac_her`` without the normaliser and the target clip, SB3's inputs and targets; SAC's
  goal-env defaults since session 16 (0.90 / 0.93 at 300k, where ``sac_her_noclip`` had 1.00 / 0.07).
- ``sac_her_floor_noclip``: SAC's defaults with the normaliser's std floored at 0.01 (``obs_norm_eps=1e-4``)
  as in HER's baselines (session 16: ahead of ``sac_her_noclip`` in the queue, whose seed 1 sat at chance
  to 180k where ``sac_her_raw``'s had left it).
- ``sac_her_floor``: ``sac_her`` with that floor (targets clipped).
- ``sac_her_clip``: the target clip on raw inputs.
- ``ddpg_baselines``: HER's DDPG as OpenAI baselines runs it on one CPU (Plappert et al. 2018, arXiv
  1802.09464; baselines ``her/experiment/config.py``): the ``fetch-cpu-explore`` preset (random_eps 0.3,
  noise 0.2, action_l2 1.0, future_4, targets clipped) with 3×256 layers, 40 updates of batch 256 per
  100 env steps (``train_freq=5 gradient_steps=2``) and the targets moved once per 40 updates with
  Polyak 0.05 (``target_update_every=40 tau=0.05``). Session 10's ``fetch-cpu-explore`` moved them after
  every update with 0.005 (≈ 4× faster per 40 updates) and reached 0.47 / 0.63 at 300k. Seed 0 only,
  with mrl's normaliser eps 1e-8 (the goal-env default when it ran).
- ``ddpg_explore_noclip`` / ``ddpg_explore_floor``: session 10's ``fetch-cpu-explore`` with unclipped TD
  targets (does the clip that held SAC back slow DDPG too?), and with the std floor.
- ``ddpg_fa22``: ``fetch-cpu-explore`` with mrl's FetchPush relabelling ``futureactual_2_2`` (desired
  goals of other stored episodes as well as future achieved ones).

``--run`` works through the jobs as a queue that survives being stopped (``benchmarks/_queue.py``):
each finished run lands in ``docs/results/fetchpush/<arm>/seed<S>/`` (rlblocks runs: ``config.json``,
``eval.csv``, ``progress.csv``; her_sb3 runs: ``rows.csv``; all: ``job.json`` with the wall time).
An rlblocks run trains in ``<arm>/seed<S>.work/`` (ignored by git) with a checkpoint every 50,000 steps,
so a worker of a later session continues a stopped one; a stopped her_sb3 run starts over.
Needs mujoco 3.3–3.11 and gymnasium-robotics 1.4.2 (the ``robotics`` extra); run it with that Python::

    python benchmarks/fetchpush.py --run & python benchmarks/fetchpush.py --run
    python benchmarks/fetchpush.py --summary --plot docs/results/fetchpush/success.png

``--summary`` prints eval success per arm and seed at 100k / 200k / 300k, each run's wall time and env
steps/s, and the rlblocks / SB3 speed ratio for the seeds both sides finished.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _queue as queue

ENV, STEPS, EVERY, EPISODES = "FetchPush-v4", 300_000, 20_000, 30
RUNS = Path("docs/results/fetchpush")
_EXPLORE = ["--algo", "ddpg", "--preset", "fetch-cpu-explore"]
#: arm → (how it runs: "her_sb3" impl or the ``rlblocks train`` arguments, seeds)
ARMS: dict[str, tuple[str | list[str], tuple[int, ...]]] = {
    "sb3_sac_her": ("sb3", (0,)),
    "sac_her": ("rlblocks", (0,)),
    # the normaliser (mrl's eps 1e-8) without the target clip: SAC's goal-env defaults in session 15
    "sac_her_noclip": (["--algo", "sac", "--preset", "fetch-cpu", "--set", "normalize_obs=true", "her_clip_target=false",
                        "obs_norm_eps=1e-8", "tau=0.005", "alpha_lr=0.001", "buffer_size=1000000"], (0, 1)),
    # sac_her with SB3's inputs and targets: raw observations, unclipped targets (session 14: at 300k
    # sac_her was still at chance, 0.07, where SB3 had left it by 140k); SAC's defaults since session 16
    "sac_her_raw": (["--algo", "sac", "--preset", "fetch-cpu", "--set", "normalize_obs=false",
                     "her_clip_target=false", "tau=0.005", "alpha_lr=0.001", "buffer_size=1000000"], (0, 1)),
    # SAC's defaults (unclipped targets) with the std floor; the target clip on raw inputs
    "sac_her_floor_noclip": (["--algo", "sac", "--preset", "fetch-cpu", "--set", "normalize_obs=true", "obs_norm_eps=0.0001",
                              "her_clip_target=false", "tau=0.005", "alpha_lr=0.001", "buffer_size=1000000"], (0, 1)),
    # sac_her with the normaliser's std floored at 0.01 as HER baselines' (obs_norm_eps=1e-4)
    "sac_her_floor": (["--algo", "sac", "--preset", "fetch-cpu", "--set", "normalize_obs=true", "obs_norm_eps=0.0001", "her_clip_target=true",
                       "tau=0.005", "alpha_lr=0.001", "buffer_size=1000000"], (0, 1)),
    "sac_her_clip": (["--algo", "sac", "--preset", "fetch-cpu", "--set", "normalize_obs=false", "her_clip_target=true",
                      "tau=0.005", "alpha_lr=0.001", "buffer_size=1000000"], (0,)),
    # run in session 14 with mrl's normaliser eps (1e-8), kept so for its seed; stayed at chance
    "ddpg_baselines": ([*_EXPLORE, "--set", "hidden_sizes=256,256,256", "train_freq=5", "gradient_steps=2",
                        "target_update_every=40", "tau=0.05", "obs_norm_eps=1e-8"], (0,)),
    # session 10's fetch-cpu-explore (0.47 / 0.63 at 300k, eps 1e-8, targets clipped) without the target
    # clip that held SAC back (sac_her_noclip), and with the std floor instead
    "ddpg_explore_noclip": ([*_EXPLORE, "--set", "her_clip_target=false"], (0, 1)),
    "ddpg_explore_floor": ([*_EXPLORE, "--set", "obs_norm_eps=0.0001"], (0, 1)),
    "ddpg_fa22": ([*_EXPLORE, "--set", "her=futureactual_2_2"], (0, 1)),
}
RLBLOCKS_KEPT = ("config.json", "eval.csv", "progress.csv")


def queue_jobs(arms: list[str] | None = None) -> list[tuple[str, int]]:
    """``(arm, seed)`` in queue order: the SB3 pair first (two workers run it side by side), then per arm its seeds."""
    return [(arm, seed) for arm, (_, seeds) in ARMS.items() if arms is None or arm in arms for seed in seeds]


def job_dir(root: Path, job: tuple[str, int]) -> Path:
    return root / job[0] / f"seed{job[1]}"


def job_command(job: tuple[str, int], steps: int = STEPS, every: int = EVERY, episodes: int = EPISODES,
                env: str = ENV) -> tuple[list[str], dict[str, str]]:
    """``(command, kept files)`` of one job; ``{tmp}`` is its scratch directory."""
    arm, seed = job
    how = ARMS[arm][0]
    if isinstance(how, str):  # a her_sb3.py side
        cmd = [sys.executable, str(HERE / "her_sb3.py"), "--impls", how, "--env", env, "--seeds", str(seed),
               "--steps", str(steps), "--eval-every", str(every), "--episodes", str(episodes), "--out", "{tmp}/rows.csv"]
        return cmd, {"rows.csv": "rows.csv"}
    cmd = [sys.executable, "-m", "rlblocks", "train", *how, "--set", f"eval_episodes={episodes}", "--env", env,
           "--seed", str(seed), "--steps", str(steps), "--eval-every", str(every), "--run-dir", "{tmp}/run",
           "--threads", "1", "--checkpoint-every", "50000", "--no-progress", "--resume"]
    return cmd, {f"run/{name}": name for name in RLBLOCKS_KEPT}


def work_dir(root: Path, job: tuple[str, int]) -> Path | None:
    """Where an rlblocks run trains (``<arm>/seed<S>.work/``, ignored by git): a later session's worker
    continues it from its last checkpoint (``train --resume``). None for her_sb3 runs, which start over."""
    return None if isinstance(ARMS[job[0]][0], str) else job_dir(root, job).with_name(f"seed{job[1]}.work")


def run_job(root: Path, job: tuple[str, int], **kw) -> None:
    cmd, kept = job_command(job, **kw)
    queue.run_into(job_dir(root, job), cmd, kept, f"{job[0]} seed {job[1]}", prefix="fetchpush-",
                   workdir=work_dir(root, job))


def wall_seconds(run: Path) -> float:
    """A landed run's wall time: its process's (``job.json``), or for a run resumed across attempts the
    training hours its ``progress.csv`` sums over them (time lost after a stopped attempt's last
    checkpoint not counted)."""
    job = json.loads((run / "job.json").read_text())
    if job.get("attempts", 1) == 1 or not (run / "progress.csv").exists():
        return job["wall_s"]
    with open(run / "progress.csv", newline="") as fh:
        return 3600.0 * float(list(csv.DictReader(fh))[-1]["hours"])


def success_curve(run: Path) -> dict[int, float]:
    """``{env step: eval success}`` of a landed run (``eval.csv`` of rlblocks, ``rows.csv`` of her_sb3)."""
    if (run / "eval.csv").exists():
        with open(run / "eval.csv", newline="") as fh:
            return {int(r["frames"]): float(r["success"]) for r in csv.DictReader(fh)}
    with open(run / "rows.csv", newline="") as fh:
        return {int(r["steps"]): float(r["success"]) for r in csv.DictReader(fh)}


def summary(root: Path, at: tuple[int, ...] = (100_000, 200_000, 300_000)) -> str:
    """Markdown: success at ``at`` per landed run, its wall time and env steps/s, then the SB3 ratios."""
    lines = ["| arm | seed | " + " | ".join(f"success @ {s:,}" for s in at) + " | wall (h) | env steps/s |",
             "|---|---:|" + "---:|" * (len(at) + 2)]
    walls: dict[tuple[str, int], float] = {}
    for arm, seed in queue_jobs():
        run = job_dir(root, (arm, seed))
        if not run.exists():
            continue
        curve = success_curve(run)
        steps = max(curve) if curve else math.nan
        walls[arm, seed] = wall = wall_seconds(run)
        cells = [f"{curve[s]:.2f}" if s in curve else "–" for s in at]
        lines.append(f"| {arm} | {seed} | " + " | ".join(cells) + f" | {wall / 3600:.2f} | {steps / wall:.1f} |")
    for seed in sorted({s for (a, s) in walls if a == "sb3_sac_her"}):
        if ("sac_her", seed) in walls:
            lines.append(f"\nSeed {seed}: rlblocks SAC+HER {walls['sb3_sac_her', seed] / walls['sac_her', seed]:.2f}× "
                         "SB3's env steps/s (whole processes, side by side).")
    return "\n".join(lines) + "\n"


def plot(root: Path, out: Path) -> list[Path]:
    """Eval success against env steps per arm (mean ± s.e. over its landed seeds) with
    :func:`rlblocks.plot.plot_curves`; the tables land beside the figure. Returns the written paths."""
    import numpy as np

    from rlblocks.plot import plot_curves

    grouped: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for arm, seed in queue_jobs():
        run = job_dir(root, (arm, seed))
        if run.exists():
            curve = sorted(success_curve(run).items())
            grouped.setdefault(arm, []).append((np.array([s for s, _ in curve]), np.array([v for _, v in curve])))
    return list(plot_curves({ENV: grouped}, out, "success", title="FetchPush-v4, HER", where=str(root)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="store_true", help="run (or continue) the queue of runs into --runs")
    p.add_argument("--summary", action="store_true", help="print the table of the landed runs")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG",
                   help="draw the landed runs' success curves (mean ± s.e. per arm) to this figure")
    p.add_argument("--runs", type=Path, default=RUNS, help=f"where finished runs land (default {RUNS})")
    p.add_argument("--arms", default=None, help=f"--run: only these arms, comma-separated ({', '.join(ARMS)})")
    args = p.parse_args(argv)
    if args.run:
        arms = args.arms.split(",") if args.arms else None
        unknown = sorted(set(arms or ()) - set(ARMS))
        if unknown:
            p.error(f"--arms {','.join(unknown)}: the arms are {', '.join(ARMS)}")
        jobs = queue_jobs(arms)
        ran = queue.run_queue(jobs, lambda job: job_dir(args.runs, job), lambda job: run_job(args.runs, job))
        print(f"queue: ran {ran} runs here; finished: {sum(job_dir(args.runs, j).exists() for j in jobs)}/{len(jobs)}")
        return 0
    if args.summary or args.plot:
        if args.summary:
            print(summary(args.runs), end="")
        if args.plot:
            print("wrote", *plot(args.runs, args.plot))
        return 0
    p.error("give --run, --summary or --plot")  # exits


if __name__ == "__main__":
    sys.exit(main())
