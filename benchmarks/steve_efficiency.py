"""Sample efficiency of STEVE against its base algorithm: evaluation return at 100k env steps for
STEVE, and at 100k and 300k for the base (Buckman et al. 2018, "Sample-Efficient Reinforcement
Learning with Stochastic Ensemble Value Expansion", arXiv 1807.01675, Sec. 6 / Fig. 2 claim an
order-of-magnitude gain in sample efficiency over DDPG; here the base is SAC or TD3).

The runs: per env (Hopper-v5, HalfCheetah-v5) and seed (0, 1), the STEVE arm for 100k steps and its
base for 300k, one ``rlblocks train`` each (one thread). ``--run`` works through them as a queue that
survives being stopped (``benchmarks/_queue.py``): a run's ``config.json``, ``eval.csv``,
``progress.csv`` and ``job.json`` (command, wall time) land in ``docs/results/steve_efficiency/runs/<arm>/<env>/seed<S>/`` only when it
completes, so re-running the command in a later session (a fresh checkout) skips finished runs and
starts an interrupted one again; two workers share the two cores::

    python benchmarks/steve_efficiency.py --run & python benchmarks/steve_efficiency.py --run
    python benchmarks/steve_efficiency.py docs/results/steve_efficiency/runs --measured-cost --out docs/results/steve_efficiency

``--arms sac`` (or ``sac_steve``) takes only that arm's runs; ``--base td3`` runs the TD3 pair
(``steve/algos/td3_steve.json`` / ``td3.json``) instead. The same runs through ``rlblocks sweep``
(resumable within a session from checkpoints; the sweep directory does not survive a fresh
checkout)::

    rlblocks sweep --config steve/algos/sac_steve.json --env Hopper-v5,HalfCheetah-v5 --seeds 0-1 \\
        --steps 100000 --jobs 2 --sweep-dir sweeps/steve_efficiency/sac_steve
    rlblocks sweep --config steve/algos/sac.json --env Hopper-v5,HalfCheetah-v5 --seeds 0-1 \\
        --steps 300000 --jobs 2 --sweep-dir sweeps/steve_efficiency/sac

Both configs start learning after 10,000 random steps (``learning_starts``, as the paper) and
evaluate every 10,000 steps (10 episodes).

For each env the script prints and writes (``<out>/steve_efficiency.{md,csv,png}``) one row per arm:
seeds and the eval return at each ``--at`` step (mean ± standard error over seeds, linearly
interpolated between evaluations; a seed that has not reached the step is left out and the count
says so), then one comparison row per expansion arm and its base (same algorithm): the ratio of
STEVE's return at the first ``--at`` step to the base's at the last, and the env steps the base's
mean curve needs to reach STEVE's first-step return, counting only evaluations after the base's
``learning_starts`` (the sample-efficiency factor is that over the first ``--at`` step). The figure has one panel per env: mean ± s.e. curves of each arm, with the
``--at`` steps marked. ``--measured-cost`` adds each arm's measured env steps per second after
learning starts (``progress.csv``), from which a full benchmark's cost is estimated.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

from rlblocks.plot import find_runs, read_curve, summarize

COMMANDS = __doc__.split("::\n\n")[1].split("\n\n``--arms")[0]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _queue as queue

RUNS = Path("docs/results/steve_efficiency/runs")
ENVS, SEEDS = ("Hopper-v5", "HalfCheetah-v5"), (0, 1)
KEPT = ("config.json", "eval.csv", "progress.csv")  # what lands in the repository (no checkpoints)


def queue_jobs(base: str, arms: list[str] | None) -> list[tuple[str, str, int, int]]:
    """``(arm, env, seed, steps)`` in queue order: per env, the STEVE runs (100k) then the base's (300k)."""
    pairs = [(f"{base}_steve", 100_000), (base, 300_000)]
    return [(arm, env, seed, steps) for env in ENVS for arm, steps in pairs if arms is None or arm in arms
            for seed in SEEDS]


def job_dir(root: Path, job: tuple[str, str, int, int]) -> Path:
    arm, env, seed, _ = job
    return root / arm / env / f"seed{seed}"


def run_job(root: Path, job: tuple[str, str, int, int]) -> None:
    """One ``rlblocks train`` in a scratch directory; its :data:`KEPT` files land in :func:`job_dir` at the end."""
    arm, env, seed, steps = job
    cmd = [sys.executable, "-m", "rlblocks", "train", "--config", f"steve/algos/{arm}.json", "--env", env,
           "--seed", str(seed), "--steps", str(steps), "--run-dir", "{tmp}/run", "--threads", "1",
           "--checkpoint-every", "50000", "--no-progress"]
    queue.run_into(job_dir(root, job), cmd, {f"run/{name}": name for name in KEPT},
                   f"{arm} {env} seed {seed} ({steps:,} steps)", prefix="steve-eff-")


def value_at(curve: tuple[np.ndarray, np.ndarray], step: float) -> float:
    """The curve's value at ``step`` (linear interpolation); NaN if the run has not reached it."""
    x, y = curve
    if step > x[-1] + 1e-9 or step < x[0] - 1e-9:
        return math.nan
    return float(np.interp(step, x, y))


def mean_se(values: list[float]) -> tuple[float, float, int]:
    """``(mean, standard error, n)`` over the finite values (s.e. 0 for one value, NaN for none)."""
    v = np.array([x for x in values if math.isfinite(x)])
    if v.size == 0:
        return math.nan, math.nan, 0
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0
    return float(v.mean()), se, int(v.size)


def steps_to_reach(grid: np.ndarray, mean: np.ndarray, level: float, after: float = -math.inf) -> float:
    """The first grid step past ``after`` at which the mean curve reaches ``level`` (linear between
    points); NaN if never. ``after`` = the base's ``learning_starts``: an untrained policy's return
    (near 0 on HalfCheetah, which early learning first drops below) is not a match."""
    keep = grid > after
    grid, mean = grid[keep], mean[keep]
    above = np.nonzero(mean >= level)[0]
    if not math.isfinite(level) or above.size == 0:
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(grid[0])
    x0, x1, y0, y1 = grid[i - 1], grid[i], mean[i - 1], mean[i]
    return float(x0 + (level - y0) / (y1 - y0) * (x1 - x0))


def learning_starts(run_dir: Path) -> int:
    """The run's ``learning_starts`` (from its ``config.json``; 0 if it has none)."""
    record = json.loads((Path(run_dir) / "config.json").read_text())
    return int(record.get("config", {}).get("learning_starts", 0))


def measured_rate(run_dir: Path) -> float:
    """Env steps per second of a run once learning started (the mean of ``progress.csv``'s ``steps_per_s``
    over the rows past ``learning_starts`` and the world model's pre-training); NaN without such rows."""
    start = learning_starts(run_dir)
    rates = []
    try:
        with open(run_dir / "progress.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError:
        return math.nan
    past = [r for r in rows if float(r["steps"]) > start]
    for r in past[1:]:  # the first row after the start holds the pre-training updates
        try:
            rates.append(float(r["steps_per_s"]))
        except (KeyError, ValueError):
            pass
    return float(np.mean(rates)) if rates else math.nan


def fmt(m: float, se: float, n: int) -> str:
    return "–" if n == 0 else f"{m:.1f} ± {se:.1f} (n={n})"


def analyse(roots: list[Path], at: list[int], measured_cost: bool) -> tuple[list[dict], list[dict], dict]:
    """Rows per arm, comparison rows and the curves per env → label (for the figure)."""
    runs = [r for root in roots for r in find_runs(root)]
    if not runs:
        sys.exit(f"no runs under {', '.join(map(str, roots))} (run the sweep commands first: --commands)")
    curves: dict[str, dict[str, list]] = {}
    dirs: dict[str, dict[str, list]] = {}
    for run in runs:
        curve = read_curve(run["dir"], "eval")
        if curve is None:
            print(f"note: {run['dir']} has no eval.csv rows; left out", file=sys.stderr)
            continue
        curves.setdefault(run["env_id"], {}).setdefault(run["label"], []).append(curve)
        dirs.setdefault(run["env_id"], {}).setdefault(run["label"], []).append(run["dir"])
    arm_rows, compare_rows, summaries = [], [], {}
    for env in sorted(curves):
        summaries[env] = {}
        for label in sorted(curves[env]):
            row = {"env": env, "arm": label, "seeds": len(curves[env][label])}
            for step in at:
                m, se, n = mean_se([value_at(c, step) for c in curves[env][label]])
                row.update({f"mean@{step}": m, f"se@{step}": se, f"n@{step}": n})
            if measured_cost:
                row["steps_per_s"] = float(np.nanmean([measured_rate(d) for d in dirs[env][label]]))
            arm_rows.append(row)
            try:
                summaries[env][label] = summarize(env, label, curves[env][label])
            except ValueError:
                print(f"note: {label} on {env}: seeds share no step range; no curve", file=sys.stderr)
        by_label = {r["arm"]: r for r in arm_rows if r["env"] == env}
        for label, row in by_label.items():
            base = label.split("+")[0]
            if "+" not in label or base not in by_label:
                continue
            first, last = at[0], at[-1]
            level = row[f"mean@{first}"]
            ref = by_label[base][f"mean@{last}"]
            starts = max(learning_starts(d) for d in dirs[env][base])
            reach = steps_to_reach(summaries[env][base].grid, summaries[env][base].mean, level, starts) \
                if base in summaries[env] else math.nan
            compare_rows.append({"env": env, "arm": label, "base": base, f"arm@{first}": level,
                                 f"base@{first}": by_label[base][f"mean@{first}"], f"base@{last}": ref,
                                 "ratio": level / ref if ref and math.isfinite(ref) else math.nan,
                                 "base_steps_to_match": reach, "efficiency": reach / first})
    return arm_rows, compare_rows, summaries


def markdown(arm_rows: list[dict], compare_rows: list[dict], at: list[int], measured_cost: bool) -> str:
    head = "| env | arm | seeds | " + " | ".join(f"return @ {s:,}" for s in at) + " |"
    head += " env steps/s after learning starts |" if measured_cost else ""
    lines = ["Eval return (mean ± standard error over seeds; n = seeds that reached the step).", "", head,
             "|---|---|---:|" + "---:|" * (len(at) + measured_cost)]
    for r in arm_rows:
        cells = [fmt(r[f"mean@{s}"], r[f"se@{s}"], r[f"n@{s}"]) for s in at]
        if measured_cost:
            cells.append(f"{r['steps_per_s']:.1f}")
        lines.append(f"| {r['env']} | {r['arm']} | {r['seeds']} | " + " | ".join(cells) + " |")
    if compare_rows:
        first, last = at[0], at[-1]
        header = (f"| env | arm vs base | arm @ {first:,} | base @ {first:,} | base @ {last:,} | "
                  f"arm@{first:,} / base@{last:,} | base steps to match arm@{first:,} | efficiency factor |")
        lines += ["", header, "|---|---|---:|---:|---:|---:|---:|---:|"]
        for c in compare_rows:
            reach = "not reached" if math.isnan(c["base_steps_to_match"]) else f"{c['base_steps_to_match']:,.0f}"
            eff = "–" if math.isnan(c["efficiency"]) else f"{c['efficiency']:.2f}x"
            lines.append(f"| {c['env']} | {c['arm']} vs {c['base']} | {c[f'arm@{first}']:.1f} | "
                         f"{c[f'base@{first}']:.1f} | {c[f'base@{last}']:.1f} | {c['ratio']:.2f} | {reach} | {eff} |")
    return "\n".join(lines) + "\n"


def figure(summaries: dict, at: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted(summaries)
    fig, axes = plt.subplots(1, len(envs), figsize=(5.0 * len(envs), 3.8), squeeze=False)
    for ax, env in zip(axes.flat, envs):
        for i, (label, g) in enumerate(sorted(summaries[env].items())):
            ax.plot(g.grid, g.mean, color=f"C{i}", label=f"{label} (n={g.seeds})")
            ax.fill_between(g.grid, g.mean - g.stderr, g.mean + g.stderr, color=f"C{i}", alpha=0.2, lw=0)
        for step in at:
            ax.axvline(step, color="grey", ls=":", lw=1)
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.set_ylabel("evaluation return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("STEVE vs base: mean ± standard error over seeds", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dirs", nargs="*", type=Path, help="sweep directories (or one directory above them)")
    p.add_argument("--at", default="100000,300000", help="env steps compared, comma-separated (default 100000,300000)")
    p.add_argument("--out", type=Path, default=None, help="write steve_efficiency.{md,csv,png} here")
    p.add_argument("--measured-cost", action="store_true", help="add env steps/s after learning starts per arm")
    p.add_argument("--commands", action="store_true", help="print the benchmark's sweep commands and exit")
    p.add_argument("--run", action="store_true", help="run (or continue) the queue of benchmark runs into --runs")
    p.add_argument("--runs", type=Path, default=RUNS, help=f"--run: where finished runs land (default {RUNS})")
    p.add_argument("--base", default="sac", choices=("sac", "td3"), help="--run: the base algorithm (default sac)")
    p.add_argument("--arms", default=None, help="--run: only these arms, comma-separated (e.g. sac or sac_steve)")
    args = p.parse_args(argv)
    if args.commands:
        print(COMMANDS)
        return 0
    if args.run:
        arms = args.arms.split(",") if args.arms else None
        unknown = sorted(set(arms or ()) - {args.base, f"{args.base}_steve"})
        if unknown:
            p.error(f"--arms {','.join(unknown)}: the arms of --base {args.base} are {args.base} and {args.base}_steve")
        jobs = queue_jobs(args.base, arms)
        ran = queue.run_queue(jobs, lambda job: job_dir(args.runs, job), lambda job: run_job(args.runs, job))
        print(f"queue: ran {ran} runs here; finished: {sum(job_dir(args.runs, j).exists() for j in jobs)}/{len(jobs)}")
        return 0
    if not args.sweep_dirs:
        p.error("give the sweep directories (or --commands)")
    at = sorted(int(float(s)) for s in args.at.split(",") if s.strip())
    arm_rows, compare_rows, summaries = analyse(args.sweep_dirs, at, args.measured_cost)
    md = markdown(arm_rows, compare_rows, at, args.measured_cost)
    print(md, end="")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "steve_efficiency.md").write_text(md)
        rows = arm_rows + compare_rows
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(args.out / "steve_efficiency.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, keys)
            writer.writeheader()
            writer.writerows(rows)
        figure(summaries, at, args.out / "steve_efficiency.png")
        print(f"wrote {args.out}/steve_efficiency.md, .csv, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
