"""Acting with a small Gaussian MLP policy in NumPy, on views of its torch parameters (CPU only).

PPO acts once per vector step on a handful of observations (``[num_envs, obs_dim]``). At that
size every torch op is dispatch overhead: on the 2-core CI machine (torch 2.13, AVX2) a
``[8, 64] @ [64, 64]`` matmul costs ~5.9 µs in torch and ~2.4 µs in NumPy, ``tanh`` 4.6 vs
2.1 µs, so one action (8 rows) took 115–220 µs in torch and takes 45–55 µs here. The update
still runs in torch; only the no-grad forward pass of acting is repeated here, with the same
maths as :meth:`rlblocks.algos.ppo.ActorCritic.features` followed by
:meth:`rlblocks.nets.distributions.DiagGaussianHead.sample_action`.

The noise comes from torch's global generator with the same draw (``randn`` of
``[B, act_dim]``) as the torch path, so samples, checkpoints of the RNG and resumed runs are the
same whichever path acts; values agree to float32 rounding (``tests/test_ppo.py``).
"""

from __future__ import annotations

import numpy as np
import torch

from rlblocks.nets.normalizer import RunningMeanStd


class NumpyGaussianActor:
    """``(normalised obs, raw sample)`` of a PPO Gaussian actor, computed in NumPy.

    Args:
        net: an ``ActorCritic`` with a :class:`~rlblocks.nets.distributions.DiagGaussianHead`,
            on CPU; its actor trunk is member 0 of the trunk ensemble.
        activation: ``"tanh"`` or ``"relu"`` (the trunk's hidden activation).
        rms: the observation normaliser's statistics, or ``None`` when observations are not
            normalised.

    The arrays are views of the parameters and of the normaliser's float32 buffers, so Adam
    steps and ``load_state_dict`` (both in place) are seen without copying. ``stale()`` tells
    when the parameters were re-pointed (e.g. by :class:`~rlblocks.nets.flat.FlatParameters`)
    and the views must be rebuilt.

    Shapes: ``obs [B, obs_dim]`` float32 → ``(x [B, obs_dim], action [B, act_dim])`` float32.
    """

    def __init__(self, net: torch.nn.Module, activation: str, rms: RunningMeanStd | None):
        self._first = net.trunk[0].weight
        self._ptr = self._first.data_ptr()
        self.layers = [(layer.weight.detach()[0].numpy(), layer.bias.detach()[0].numpy()) for layer in net.trunk]
        head = net.pi_head
        self.mean_w = head.mean.weight.detach().numpy().T  # [feature_dim, act_dim] view
        self.mean_b = head.mean.bias.detach().numpy()
        self.log_std = head.log_std.detach().numpy()
        self.relu = activation == "relu"
        self.rms = rms
        self._noise: torch.Tensor | None = None

    def stale(self) -> bool:
        """True when the parameters no longer live where the views point."""
        return self._first.data_ptr() != self._ptr

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = obs
        if self.rms is not None:
            _, _, _, mean32, inv_std32 = self.rms.numpy_views()
            x = (x - mean32) * inv_std32
            np.maximum(x, -self.rms.clip, out=x)
            np.minimum(x, self.rms.clip, out=x)
        h = x
        for w, b in self.layers:
            h = h @ w
            h += b
            if self.relu:
                np.maximum(h, 0.0, out=h)
            else:
                np.tanh(h, out=h)
        action = h @ self.mean_w
        action += self.mean_b
        if self._noise is None or self._noise.shape != action.shape:
            self._noise = torch.empty(action.shape)
        torch.randn(action.shape, out=self._noise)  # torch's RNG, as DiagGaussianHead.sample_action
        action += np.exp(self.log_std) * self._noise.numpy()
        return x, action
