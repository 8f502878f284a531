"""Cheap metric accumulation for update loops: sums stay on the device, one sync per log row."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class MetricSums:
    """Running sums of a fixed set of scalar metrics.

    ``add`` stacks scalar tensors and adds them on the device (no ``.item()``); ``pop`` returns the
    means since the previous ``pop`` as floats (one host sync) and resets. Modules expose it to the
    logger through ``metric_names`` and ``pop_metrics()``; the sums go into checkpoints so the first
    log row after a resume equals the uninterrupted run's.
    """

    def __init__(self, names: Sequence[str]):
        self.names = tuple(names)
        self.sums: torch.Tensor | None = None
        self.count = 0

    def add(self, values: Sequence[torch.Tensor] | torch.Tensor) -> None:
        """Add one sample of every metric (scalar tensors in ``names`` order, or a stacked vector)."""
        stacked = values.detach() if isinstance(values, torch.Tensor) else torch.stack([v.detach() for v in values])
        self.sums = stacked if self.sums is None else self.sums + stacked
        self.count += 1

    def pop(self) -> dict[str, float]:
        """Means since the last call (NaN for every metric when nothing was added)."""
        if self.sums is None:
            return {n: float("nan") for n in self.names}
        values = (self.sums / self.count).tolist()
        self.sums, self.count = None, 0
        return dict(zip(self.names, values))

    def state_dict(self) -> dict:
        return {"sums": self.sums, "count": self.count}

    def load_state_dict(self, state: dict | None) -> None:
        state = state or {"sums": None, "count": 0}
        self.sums, self.count = state["sums"], int(state["count"])


def explained_variance(predictions: torch.Tensor, targets: torch.Tensor, min_var: float = 0.0) -> torch.Tensor:
    """``1 - Var[targets - predictions] / Var[targets]``, population variances over all of ``targets``'
    elements: how much of the targets' variance the predictions account for (1: all, 0: no better
    than their mean, < 0: worse).

    Shapes: ``targets [*S]``, ``predictions [*P, *S]`` → ``[*P]`` (a 0-d tensor when ``P`` is empty);
    e.g. PPO's values and returns ``[T, N]`` → ``[]``, MERL's ensemble values ``[E, B]`` against
    returns ``[B]`` → ``[E]``. ``min_var`` floors ``Var[targets]``; with 0 (SB3's ``explained_variance``)
    constant targets give NaN or -inf.
    """
    dims = tuple(range(-targets.dim(), 0))
    var = targets.var(dim=dims, unbiased=False)
    if min_var > 0:
        var = var.clamp_min(min_var)
    return 1.0 - (targets - predictions).var(dim=dims, unbiased=False) / var
