"""Learning curves and a summary table for a sweep (or any directory of runs).

``rlblocks plot SWEEP_DIR`` finds every run below ``SWEEP_DIR`` (a directory with a
``config.json`` naming ``algo``, ``env_id`` and ``seed``), and draws one panel per env with, per
variant (:func:`run_label`: the algorithm, plus its value target when that is not TD(0), so STEVE
and plain runs of one algorithm are separate curves), the mean curve over seeds and a shaded band of ± one standard error. Seeds are
aligned by linear interpolation on a common step grid spanning the steps that every seed of
the group reached. Next to the figure it writes ``<stem>_summary.md`` and ``<stem>_summary.csv``:
per env × algorithm, the number of seeds, the final score (mean ± std over seeds, and the mean's 95%
bootstrap interval), the interquartile mean (IQM) of the final scores with its 95% bootstrap
interval (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice"; computed in
:mod:`rlblocks.aggregate` with SciPy) and the best point of the mean curve (± std over seeds there).

Metrics: ``eval`` reads ``eval.csv`` (``score`` against ``frames``); ``train`` reads
``progress.csv`` (``train_return`` against ``steps``).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlblocks.aggregate import CONFIDENCE, Estimate, interval_estimate
from rlblocks.errors import RLBlocksError

#: metric → (file, x column, y column, axis label)
METRICS = {
    "eval": ("eval.csv", "frames", "score", "evaluation return"),
    "train": ("progress.csv", "steps", "train_return", "training return (last 10 episodes)"),
    "success": ("eval.csv", "frames", "success", "evaluation success rate (goal envs)"),
}
MAX_POINTS = 200  # grid points per curve


def _note(text: str) -> None:
    print(f"rlblocks: note: {text}", file=sys.stderr)


def run_label(record: dict) -> str:
    """The curve a run belongs to: ``algo``, or ``algo+target Hh`` for a model-based value-expansion
    target (``sac+steve H3``; ``config.target``/``horizon`` of the run's ``config.json``)."""
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    target = config.get("target", "td")
    if target in (None, "td"):
        return str(record["algo"])
    return f"{record['algo']}+{target} H{config.get('horizon', '?')}"


def find_runs(root: str | Path) -> list[dict]:
    """Every run below ``root`` (``root`` itself may be a run): dicts with algo, label
    (:func:`run_label`), env_id, seed, dir."""
    root = Path(root)
    runs = []
    for config in sorted(root.rglob("config.json")):
        try:
            record = json.loads(config.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and {"algo", "env_id", "seed"} <= record.keys():
            runs.append({"algo": str(record["algo"]), "label": run_label(record), "env_id": str(record["env_id"]),
                         "seed": record["seed"], "dir": config.parent})
    return runs


def read_curve(run_dir: str | Path, metric: str = "eval") -> tuple[np.ndarray, np.ndarray] | None:
    """``(steps, values)`` of one run, sorted by step, finite values only; ``None`` if there are none.

    A step logged twice (a resumed run) keeps its last value.
    """
    fname, xcol, ycol, _ = METRICS[metric]
    path = Path(run_dir) / fname
    if not path.exists():
        return None
    points: dict[float, float] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                x, y = float(row[xcol]), float(row[ycol])
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(x) and math.isfinite(y):
                points[x] = y
    if not points:
        return None
    xs = np.array(sorted(points))
    return xs, np.array([points[x] for x in xs])


def align(curves: list[tuple[np.ndarray, np.ndarray]], max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate curves onto a common grid; returns ``(grid [G], values [n_curves, G])``.

    The grid covers ``[max of first steps, min of last steps]``, the range every curve reached:
    the logged steps themselves when there are at most ``max_points`` of them (evaluations at
    fixed intervals then need no interpolation), else ``max_points`` evenly spaced steps.

    Raises:
        ValueError: the curves have no step range in common.
    """
    lo = max(float(x[0]) for x, _ in curves)
    hi = min(float(x[-1]) for x, _ in curves)
    if lo > hi:
        raise ValueError("curves do not overlap")
    grid = np.unique(np.concatenate([x[(x >= lo) & (x <= hi)] for x, _ in curves]))
    if grid.size == 0:
        grid = np.array([lo, hi]) if lo < hi else np.array([lo])
    if grid.size > max_points:
        grid = np.linspace(lo, hi, max_points)
    return grid, np.stack([np.interp(grid, x, y) for x, y in curves])


def _std(values: np.ndarray) -> np.ndarray:
    """Sample standard deviation over axis 0 (ddof=1); 0 for a single seed."""
    return values.std(axis=0, ddof=1) if values.shape[0] > 1 else np.zeros(values.shape[1:])


@dataclass
class GroupSummary:
    """Aggregates of one env × algorithm over its seeds."""

    env_id: str
    algo: str
    seeds: int
    grid: np.ndarray
    mean: np.ndarray
    stderr: np.ndarray
    final_step: float
    final_mean: float
    final_std: float
    best_mean: float
    best_std: float
    best_step: float
    final_mean_ci: Estimate  # the mean of the final scores with its bootstrap interval
    iqm_final: Estimate  # their interquartile mean with its bootstrap interval

    def row(self, metric: str) -> dict:
        """Plain values for the CSV table (interval bounds NaN for one seed)."""
        return {"env": self.env_id, "algo": self.algo, "metric": metric, "seeds": self.seeds,
                "final_step": int(self.final_step), "final_mean": self.final_mean, "final_std": self.final_std,
                "final_mean_ci_low": self.final_mean_ci.low, "final_mean_ci_high": self.final_mean_ci.high,
                "iqm_final": self.iqm_final.value, "iqm_final_ci_low": self.iqm_final.low,
                "iqm_final_ci_high": self.iqm_final.high,
                "best_mean": self.best_mean, "best_std": self.best_std, "best_step": int(self.best_step)}


def summarize(env_id: str, algo: str, curves: list[tuple[np.ndarray, np.ndarray]]) -> GroupSummary:
    """Align one group's seed curves and compute its mean curve, standard error and table row."""
    grid, values = align(curves)
    n = values.shape[0]
    mean, std = values.mean(0), _std(values)
    best = int(np.argmax(mean))
    final = values[:, -1]
    return GroupSummary(env_id, algo, n, grid, mean, std / math.sqrt(n), float(grid[-1]), float(final.mean()),
                        float(std[-1]), float(mean[best]), float(std[best]), float(grid[best]),
                        interval_estimate(final, "mean"), interval_estimate(final, "iqm"))


def _interval(e: Estimate) -> str:
    return "–" if math.isnan(e.low) else f"[{e.low:.2f}, {e.high:.2f}]"


def markdown_table(groups: list[GroupSummary], metric: str) -> str:
    """The summary as a Markdown table."""
    label = METRICS[metric][3]
    pct = f"{CONFIDENCE:.0%}"
    lines = [(f"Summary of {label} ({metric}); final = at the last step every seed reached; best = best point "
              "of the mean curve; ± is the standard deviation over seeds; IQM = interquartile mean of final scores; "
              f"[low, high] = {pct} percentile-bootstrap interval over seeds (– for one seed)."),
             "",
             (f"| env | algo | seeds | final step | final (mean ± std) | final mean {pct} CI | IQM final | "
              f"IQM {pct} CI | best (mean ± std) | best at step |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for g in groups:
        lines.append(f"| {g.env_id} | {g.algo} | {g.seeds} | {int(g.final_step)} | {g.final_mean:.2f} ± "
                     f"{g.final_std:.2f} | {_interval(g.final_mean_ci)} | {g.iqm_final.value:.2f} | "
                     f"{_interval(g.iqm_final)} | {g.best_mean:.2f} ± {g.best_std:.2f} | {int(g.best_step)} |")
    return "\n".join(lines) + "\n"


def plot_sweep(sweep_dir: str | Path, out: str | Path | None = None, metric: str = "eval") -> tuple[Path, Path, Path]:
    """Draw the curves of every run below ``sweep_dir`` and write the summary tables.

    Args:
        sweep_dir: a sweep directory (or any directory holding run directories, or one run).
        out: the figure path (default ``<sweep_dir>/<metric>.png``); the tables are written as
            ``<stem>_summary.md`` and ``<stem>_summary.csv`` beside it.
        metric: ``eval`` (eval.csv) or ``train`` (progress.csv).

    Returns:
        The paths of the figure, the Markdown table and the CSV table.

    Raises:
        RLBlocksError: no such directory, no runs, no data for ``metric``, or matplotlib missing.
    """
    if metric not in METRICS:
        raise RLBlocksError(f"--metric {metric!r} is not one of {', '.join(METRICS)}")
    root = Path(sweep_dir)
    if not root.is_dir():
        raise RLBlocksError(f"{root} is not a directory; pass a sweep directory made by `rlblocks sweep`")
    try:
        import matplotlib  # noqa: F401 - checked here so a missing extra stops before any reading
        import scipy.stats  # noqa: F401 - the summary's statistics (rlblocks.aggregate)
    except ImportError:
        raise RLBlocksError('rlblocks plot needs matplotlib and scipy: pip install -e ".[plot]"') from None
    runs = find_runs(root)
    if not runs:
        raise RLBlocksError(f"no runs under {root} (no config.json naming algo, env_id and seed); "
                            "pass the directory `rlblocks sweep` wrote")
    fname = METRICS[metric][0]
    grouped: dict[str, dict[str, list]] = {}
    empty = []
    for run in runs:
        curve = read_curve(run["dir"], metric)
        if curve is None:
            empty.append(run["dir"])
            continue
        grouped.setdefault(run["env_id"], {}).setdefault(run["label"], []).append(curve)
    if not grouped:
        hint = ("train with --eval-every > 0, or use --metric train" if metric == "eval"
                else "train longer than --set log_every (progress rows), or use --metric eval")
        raise RLBlocksError(f"none of the {len(runs)} runs under {root} has data in {fname}; {hint}")
    for d in empty:
        _note(f"{d} has no data in {fname}; left out")
    fig_path = Path(out) if out is not None else root / f"{metric}.png"
    return plot_curves(grouped, fig_path, metric, title=root.name, where=str(root))


def plot_curves(grouped: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]], out: str | Path,
                metric: str = "eval", title: str = "", where: str = "the input") -> tuple[Path, Path, Path]:
    """Draw grouped seed curves (one panel per env, one line per label) and write the summary tables.

    The drawing half of :func:`plot_sweep`, for curves that do not come from run directories
    (``benchmarks/parity.py`` plots its per-seed CSVs, SB3's runs included, with it).

    Args:
        grouped: ``{env_id: {label: [(steps [T], values [T]) per seed]}}``.
        out: the figure path; the tables are written as ``<stem>_summary.md`` / ``.csv`` beside it.
        metric: a key of :data:`METRICS` (axis label and table caption).
        title: the figure's title prefix.
        where: names the source in error messages.

    Returns:
        The paths of the figure, the Markdown table and the CSV table.

    Raises:
        RLBlocksError: no group has seeds whose curves overlap, or the figure cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fname = METRICS[metric][0]
    groups: list[GroupSummary] = []
    for env_id in sorted(grouped):
        for algo in sorted(grouped[env_id]):
            try:
                groups.append(summarize(env_id, algo, grouped[env_id][algo]))
            except ValueError:
                _note(f"{algo} on {env_id}: the seeds' curves share no step range; left out")
    if not groups:
        raise RLBlocksError(f"no algorithm in {where} has seeds whose {fname} curves overlap")

    envs = sorted({g.env_id for g in groups})
    algos = sorted({g.algo for g in groups})
    colors = {a: f"C{i % 10}" for i, a in enumerate(algos)}
    ncols = min(3, len(envs))
    nrows = math.ceil(len(envs) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.8 * nrows), squeeze=False)
    for ax, env_id in zip(axes.flat, envs):
        for g in (g for g in groups if g.env_id == env_id):
            ax.plot(g.grid, g.mean, color=colors[g.algo], label=f"{g.algo} (n={g.seeds})", marker="." if
                    g.grid.size == 1 else None)
            ax.fill_between(g.grid, g.mean - g.stderr, g.mean + g.stderr, color=colors[g.algo], alpha=0.2, lw=0)
        ax.set_title(env_id)
        ax.set_xlabel("env steps")
        ax.set_ylabel(METRICS[metric][3])
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    for ax in list(axes.flat)[len(envs):]:
        ax.set_visible(False)
    fig.suptitle(f"{title}: mean ± standard error over seeds", fontsize="medium")
    fig.tight_layout()

    fig_path = Path(out)
    if not fig_path.suffix:
        fig_path = fig_path.with_suffix(".png")
    fig_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(fig_path, dpi=120)
    except ValueError as e:  # unknown extension
        raise RLBlocksError(f"cannot write {fig_path}: {e}") from None
    finally:
        plt.close(fig)
    md_path = fig_path.with_name(f"{fig_path.stem}_summary.md")
    csv_path = fig_path.with_name(f"{fig_path.stem}_summary.csv")
    md_path.write_text(markdown_table(groups, metric))
    rows = [g.row(metric) for g in groups]
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return fig_path, md_path, csv_path
