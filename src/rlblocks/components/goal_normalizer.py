"""The ``normalizer`` module for goal envs: per-key running normalisation, concatenated for the networks."""

from __future__ import annotations

import torch

from rlblocks.module import Module, Weights
from rlblocks.nets.normalizer import RunningMeanStd

#: mrl's normaliser clips raw inputs to this range before its statistics and the normalisation.
RAW_CLIP = 200.0


class GoalNormalizer(Module, Weights):
    """Maps a goal observation ``{observation, achieved_goal, desired_goal}`` to the network input
    ``concat(norm_obs(observation), norm_goal(desired_goal))``.

    As mrl (Pitis et al. 2020): each raw input is clipped to ±200, normalised with running
    statistics (observations and goals apart; the goal statistics see achieved and desired goals,
    since relabelled goals are achieved goals) and the result clipped to ±``clip``. Statistics
    update in ``process_experience`` (from ``next_obs``) only, so they are frozen in evaluation.
    With ``normalize=False`` the keys are only concatenated.

    ``enabled`` is always true: the algorithms must call it to turn dicts into network inputs.

    Shapes: ``{observation [B, O], desired_goal [B, G], ...}`` → ``[B, O + G]``.
    """

    name = "normalizer"
    enabled = True

    def __init__(self, obs_dim: int, goal_dim: int, normalize: bool, clip: float = 5.0, eps: float = 1e-8):
        super().__init__()
        self.normalize = normalize
        self.obs_rms = RunningMeanStd((obs_dim,), clip=clip, eps=eps)
        self.goal_rms = RunningMeanStd((goal_dim,), clip=clip, eps=eps)

    def process_experience(self, exp) -> None:
        if self.normalize:
            nxt = exp["next_obs"]
            self.obs_rms.update(nxt["observation"].clamp(-RAW_CLIP, RAW_CLIP))
            self.goal_rms.update(torch.cat([nxt["achieved_goal"], nxt["desired_goal"]]).clamp(-RAW_CLIP, RAW_CLIP))

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        o, g = obs["observation"], obs["desired_goal"]
        if self.normalize:
            o = self.obs_rms(o.clamp(-RAW_CLIP, RAW_CLIP))
            g = self.goal_rms(g.clamp(-RAW_CLIP, RAW_CLIP))
        return torch.cat([o, g], -1)

    def to(self, device) -> GoalNormalizer:
        self.obs_rms.to(device)
        self.goal_rms.to(device)
        return self

    def state_dict(self):
        return {"obs": {k: v.clone() for k, v in self.obs_rms.state_dict().items()},
                "goal": {k: v.clone() for k, v in self.goal_rms.state_dict().items()}}

    def load_state_dict(self, state):
        self.obs_rms.load_state_dict(state["obs"])
        self.goal_rms.load_state_dict(state["goal"])
