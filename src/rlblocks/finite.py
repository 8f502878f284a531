"""Stop training at the first NaN or Inf in a loss, naming the loss (and keep the last good checkpoint)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlblocks.errors import NonFiniteError


def check_finite(names: Sequence[str], values: torch.Tensor, where: str) -> None:
    """Raise :class:`NonFiniteError` naming the first of ``names`` whose entry of ``values`` (a
    vector ``[len(names)]``, e.g. the running sums of an update's losses) is NaN or Inf.

    One host sync per call. A run stopped by it saves nothing more: the latest checkpoint was
    written before the bad update (:class:`~rlblocks.components.checkpointer.Checkpointer` also
    refuses non-finite weights), so ``rlblocks resume`` starts from good weights.

    Args:
        where: the update's place, e.g. ``"at update 1200 (env step 5000)"``.
    """
    finite = torch.isfinite(values)
    if bool(finite.all()):
        return
    i = int((~finite).nonzero()[0, 0])
    raise NonFiniteError(f"{names[i]} is {float(values[i])} {where}: training stopped before saving it; the latest "
                         "checkpoint holds the last good weights (lower the learning rates, or look for NaN/Inf in the "
                         "env's rewards and observations, then resume)")


def first_non_finite(state, prefix: str = "") -> str | None:
    """The dotted name of the first floating-point tensor in a nested ``state`` (dicts, lists,
    tensors) that holds a NaN or Inf; ``None`` if there is none."""
    if isinstance(state, torch.Tensor):
        return prefix if state.is_floating_point() and not bool(torch.isfinite(state).all()) else None
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    for key, value in items:
        found = first_non_finite(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None
