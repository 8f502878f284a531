"""Hindsight Experience Replay as a replay stage: relabel goals at sample time ("online HER").

Andrychowicz et al. 2017, "Hindsight Experience Replay", arXiv 1707.01495 (strategies final,
future, episode), and mrl's online variants (Pitis et al. 2020, ``replays/online_her_buffer.py``):
each sampled transition keeps its own goal or gets another one, and its rewards are recomputed
with the env's vectorised ``compute_reward`` for that goal. Works with vector envs (each env's
episodes are contiguous rows of its column) and with n-step returns: every one of the ``n``
rewards of the window is recomputed for the relabelled goal.

Strategies (``her`` config key; probabilities per sampled transition):

============================  =====================================================================
``none``                      no relabelling
``future_k``                  ``k/(k+1)``: the achieved goal of a uniformly drawn step ``t' in [t, T]``
                              of the same episode (``T`` its last step); ``1/(k+1)``: the real goal
``final``                     ``1/2``: the episode's final achieved goal; ``1/2``: the real goal
``episode_k`` (``episode``)   ``k/(k+1)`` (``k = 4``): the achieved goal of a uniformly drawn step of
                              the whole episode; ``1/(k+1)``: the real goal
``futureactual_f_a``          ``f : a : 1``: future goals, actual goals (desired goals of uniformly
                              drawn stored transitions), real goals
``rfaab_r_f_a_ach_b``         ``r : f : a : ach : b``: real, future, actual, achieved (achieved goals
                              of uniformly drawn stored transitions), behavioural goals (the goals
                              the agent pursued; without a goal-exploration module they are the
                              desired goals, so ``b`` draws as ``a`` does)
============================  =====================================================================

"Achieved goal of step ``t'``" is ``next_obs.achieved_goal`` of that step (the goal reached by
taking the action). Transitions are drawn uniformly among those of finished episodes
(:meth:`ReplayBuffer.complete_indices`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from rlblocks.buffers.replay import Batch, ReplayBuffer
from rlblocks.errors import ConfigError

#: Goal sources, in the order of :attr:`Strategy.probs`.
SOURCES = ("real", "future", "final", "episode", "actual", "achieved", "behavioural")


@dataclass(frozen=True)
class Strategy:
    """Probabilities of each goal source (:data:`SOURCES` order), summing to 1."""

    name: str
    probs: tuple[float, ...]

    def prob(self, source: str) -> float:
        return self.probs[SOURCES.index(source)]


def _strategy(name: str, **weights: float) -> Strategy:
    total = sum(weights.values())
    return Strategy(name, tuple(weights.get(s, 0.0) / total for s in SOURCES))


_NUM = r"(\d+(?:\.\d+)?)"


def parse_strategy(text: str) -> Strategy | None:
    """The :class:`Strategy` named by ``text`` (``None`` for ``none``); see the module docstring.

    Raises:
        ConfigError: an unknown form, naming the accepted ones.
    """
    if text == "none":
        return None
    if text == "final":
        return _strategy(text, real=1.0, final=1.0)
    if text == "episode":
        return _strategy(text, real=1.0, episode=4.0)
    patterns = {
        rf"future_{_NUM}": lambda k: _strategy(text, real=1.0, future=k),
        rf"episode_{_NUM}": lambda k: _strategy(text, real=1.0, episode=k),
        rf"futureactual_{_NUM}_{_NUM}": lambda f, a: _strategy(text, real=1.0, future=f, actual=a),
        rf"rfaab_{_NUM}_{_NUM}_{_NUM}_{_NUM}_{_NUM}": lambda r, f, a, ach, b: _strategy(
            text, real=r, future=f, actual=a, achieved=ach, behavioural=b),
    }
    for pattern, make in patterns.items():
        match = re.fullmatch(pattern, text)
        if match:
            values = [float(v) for v in match.groups()]
            if sum(values) > 0:
                return make(*values)
    raise ConfigError(f"her={text!r} is not a relabelling strategy: use none, future_K, final, episode_K, "
                      "futureactual_F_A or rfaab_R_F_A_ACH_B (numbers, e.g. future_4, futureactual_2_2, "
                      "rfaab_1_4_3_1_1)")


class HindsightRelabel:
    """The relabel stage: draws indices of finished episodes, picks a goal per transition by
    ``strategy`` and assembles the (n-step) batch with recomputed rewards.

    Args:
        strategy: the goal sources' probabilities.
        compute_reward: the env's ``compute_reward(achieved [N, G], desired [N, G], info) -> [N]``
            (NumPy, vectorised).
        goal_key, achieved_key: the observation keys of the desired and achieved goals.
        terminal_on_success: a step whose recomputed reward is 0 (its goal reached, in the sparse
            -1/0 convention) is terminal for that goal (mrl's ``first_visit_succ``), for envs that
            end at the goal (BitFlip); otherwise the stored ``terminated`` flags hold (goal envs
            that never terminate: mrl's ``never_done``).

    ``buffer`` must store dict observations with ``track_episodes=True``.
    """

    def __init__(self, strategy: Strategy, compute_reward, goal_key: str = "desired_goal",
                 achieved_key: str = "achieved_goal", terminal_on_success: bool = False):
        self.strategy = strategy
        self.terminal_on_success = terminal_on_success
        self.compute_reward = compute_reward
        self.goal_key, self.achieved_key = goal_key, achieved_key
        self._cum = torch.tensor(np.cumsum(strategy.probs)[:-1], dtype=torch.float64)

    def choose_goals(self, buffer: ReplayBuffer, t: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(goal [B, G], source [B])``: a goal for each transition (rows ``t``, envs ``e``) and the
        index in :data:`SOURCES` of where it came from. Uses torch's RNG."""
        B, rows = t.shape[0], buffer.rows
        ag = buffer.flat(buffer.next_obs[self.achieved_key])
        dg = buffer.flat(buffer.obs[self.goal_key])
        source = torch.searchsorted(self._cum, torch.rand(B, dtype=torch.float64), right=True).to(t.device)
        goal = dg[buffer.flat_index(t, e)]  # real goals

        last = buffer.episode_last(t, e)
        ahead = (last - t) % rows  # steps after t in the episode
        future = (t + (torch.rand(B, device=t.device) * (ahead + 1)).long().clamp(max=ahead)) % rows
        start = buffer.episode_start_row(t, e)
        span = (last - start) % rows + 1
        anywhere = (start + (torch.rand(B, device=t.device) * span).long().clamp(max=span - 1)) % rows
        rt, re_ = buffer.sample_indices(B)  # random stored transitions (actual, achieved, behavioural)
        random_flat = buffer.flat_index(rt, re_)
        # Every draw above is made whatever the strategy (one RNG stream for all); only the goals of
        # sources the strategy uses are gathered.
        candidates = {
            "future": lambda: ag[buffer.flat_index(future, e)], "final": lambda: ag[buffer.flat_index(last, e)],
            "episode": lambda: ag[buffer.flat_index(anywhere, e)], "actual": lambda: dg[random_flat],
            "achieved": lambda: ag[random_flat], "behavioural": lambda: dg[random_flat],
        }
        for i, name in enumerate(SOURCES):
            if i and self.strategy.probs[i] > 0:
                goal = torch.where((source == i)[:, None], candidates[name](), goal)
        return goal, source

    def sample(self, buffer: ReplayBuffer, batch_size: int) -> Batch:
        """A relabelled batch: ``obs``/``next_obs`` carry the chosen goal, rewards are recomputed."""
        t, e = buffer.complete_indices(batch_size)
        goal, _ = self.choose_goals(buffer, t, e)
        return buffer.assemble(t, e, replace={self.goal_key: goal}, reward_fn=self.reward_fn(buffer, goal))

    def reward_fn(self, buffer: ReplayBuffer, goal: torch.Tensor):
        """``idx [B, n] -> (rewards [B, n], terminal [B, n] or None)``: ``compute_reward`` of each step's
        achieved goal for ``goal [B, G]`` (and, with ``terminal_on_success``, ``reward == 0``)."""
        ag = buffer.flat(buffer.next_obs[self.achieved_key])

        def rewards(idx: torch.Tensor) -> torch.Tensor:
            achieved = ag[idx].cpu().numpy()  # [B, n, G]
            desired = np.broadcast_to(goal.cpu().numpy()[:, None, :], achieved.shape)
            G = achieved.shape[-1]
            r = self.compute_reward(achieved.reshape(-1, G), np.ascontiguousarray(desired).reshape(-1, G), None)
            r = torch.as_tensor(np.asarray(r, dtype=np.float32).reshape(idx.shape), device=idx.device)
            return r, (r > -0.5 if self.terminal_on_success else None)

        return rewards
