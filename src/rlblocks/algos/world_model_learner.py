"""The ``world_model`` module: trains a :class:`~rlblocks.models.WorldModel` from the replay buffer.

Buckman et al. 2018 (arXiv 1807.01675) train the world model in its own learner process on its
own replay; here it runs in the synchronous loop, before the value learner in module order: at
the first update round it takes ``wm_pretrain_updates`` steps (the paper pre-trains 10k), then
``wm_updates_per_step`` per value update. Each update samples ``E × wm_batch_size`` one-step
transitions uniformly; member ``e`` trains on its own ``wm_batch_size`` of them (each example
trains one random member). Observations pass through the agent's normaliser, as the value
learner's do, so the model predicts in the space the ``target`` module imagines in.
"""

from __future__ import annotations

import torch

from rlblocks.algos.off_policy import update_due
from rlblocks.finite import check_finite
from rlblocks.metrics import MetricSums
from rlblocks.models import WorldModel
from rlblocks.module import MetricsSource, Module


class WorldModelLearner(Module, MetricsSource):
    """Owns the world model and its optimiser; logs ``wm_dynamics_loss, wm_reward_loss, wm_termination_loss``."""

    name = "world_model"
    requires = ("replay", "normalizer")
    metric_names = ("wm_dynamics_loss", "wm_reward_loss", "wm_termination_loss")

    def __init__(self, obs_dim: int, act_dim: int, cfg, device: torch.device):
        super().__init__()
        self.cfg = cfg
        self.model = WorldModel(obs_dim, act_dim, cfg.wm_ensemble, cfg.wm_dynamics_hidden, cfg.wm_reward_hidden).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.wm_lr, weight_decay=cfg.wm_weight_decay,
                                          fused=True)
        self.updates = 0
        self.metrics = MetricSums(self.metric_names)

    def optimize(self) -> None:
        cfg, agent = self.cfg, self.agent
        if not update_due(agent, cfg):
            return
        n = cfg.gradient_steps * cfg.wm_updates_per_step
        if self.updates == 0:
            n += cfg.wm_pretrain_updates
        for _ in range(n):
            self.train_step()
        check_finite(self.metric_names, self.metrics.sums, f"at world-model update {self.updates} "
                     f"(env step {agent.env_steps})")

    def sample(self, rows: int):
        """``rows`` uniform one-step transitions ``(obs, action, reward, next_obs, terminated)``, flat."""
        buf = self.agent.replay.buffer
        obs, action, reward, next_obs, terminated = buf.transitions(*buf.sample_indices(rows))
        norm = self.agent.normalizer  # the replay's last stage, as for the algorithms' batches
        if norm.enabled:
            obs, next_obs = norm(obs), norm(next_obs)
        return obs, action, reward, next_obs, terminated.float()

    def train_step(self) -> None:
        E, B = self.cfg.wm_ensemble, self.cfg.wm_batch_size
        obs, action, reward, next_obs, term = (x.view(E, B, *x.shape[1:]) for x in self.sample(E * B))
        loss, losses = self.model.loss(obs, action, reward, next_obs, term)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.metrics.add(losses)
        self.updates += 1

    def pop_metrics(self) -> dict[str, float]:
        return self.metrics.pop()

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "updates": self.updates, "metrics": self.metrics.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self.metrics.load_state_dict(state.get("metrics"))
