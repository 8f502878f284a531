"""The ``env`` module: owns the vector env, steps it with the agent's policy."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import torch

from rlblocks.envs import make_vec_env
from rlblocks.errors import CheckpointError, RLBlocksError
from rlblocks.module import Actor, Closeable, Module, as_actor


class EnvRunner(Module, Closeable):
    """Steps a gymnasium vector env (``SAME_STEP`` autoreset) with ``agent.policy`` as an
    :class:`~rlblocks.module.Actor`.

    ``step()`` returns ``(exp, finished)``: ``exp`` holds CPU tensors with leading dim
    ``num_envs`` — ``obs``, ``action`` (policy space [-1, 1] for Box), ``reward``, ``next_obs``
    (the true final observation where an episode ended), ``terminated``, ``truncated`` — and the
    actor's ``extras`` (a dict); ``finished`` lists ``{"return", "length", "env"}`` of episodes
    that ended on this step.

    The runner keeps the actor's state of each env (``state``: ``()`` when feed-forward) and
    resets it where an episode ends: with ``SAME_STEP`` autoreset the observation returned at that
    step is the first of the next episode, so the next ``act`` starts it from the initial state.
    The states are part of :meth:`state_dict`, so a resumed run continues mid-episode exactly.

    Box actions are mapped affinely from [-1, 1] to the env's ``[low, high]``.

    Args:
        env_id, num_envs, mode: see :func:`rlblocks.envs.make_vec_env`.
        seed: env ``i`` is reset with ``seed + i``.
        info_keys: the envs' own info keys to keep (none by default: nothing here reads them,
            and the vector env spends time merging them; see :class:`~rlblocks.envs.make.KeepInfoKeys`).
    """

    name = "env"
    requires = ("policy",)

    def __init__(self, env_id: str, num_envs: int, seed: int, mode: str = "sync", info_keys: tuple[str, ...] = ()):
        super().__init__()
        self.env_id, self.num_envs, self.seed, self.mode = env_id, num_envs, seed, mode
        self.vec = make_vec_env(env_id, num_envs, mode, info_keys=info_keys, copy=False)
        self.obs_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        if not isinstance(self.obs_space, gym.spaces.Box):
            raise RLBlocksError(f"{env_id} has {self.obs_space} observations; this algorithm needs a flat Box")
        self.continuous = isinstance(self.action_space, gym.spaces.Box)
        self._rescale = False
        if self.continuous:
            low, high = self.action_space.low, self.action_space.high
            self._scale, self._offset = (high - low) / 2.0, (high + low) / 2.0
            self._rescale = not (np.all(self._scale == 1.0) and np.all(self._offset == 0.0))
        obs, _ = self.vec.reset(seed=seed)
        self.obs = torch.from_numpy(np.array(obs, dtype=np.float32))  # a copy: the vector env reuses its array
        self.episode_return = np.zeros(num_envs)
        self.episode_length = np.zeros(num_envs, dtype=np.int64)

    def setup(self) -> None:
        self.actor: Actor = as_actor(self.agent.policy)
        self.state = self.actor.initial_state(self.num_envs)

    def to_env_action(self, action: torch.Tensor) -> np.ndarray:
        a = action.numpy()
        return a * self._scale + self._offset if self._rescale else a  # [-1, 1] boxes pass as they are

    def step(self):
        obs = self.obs
        action, self.state, extras = self.actor.act(obs, self.state)
        next_obs_np, reward, terminated, truncated, info = self.vec.step(self.to_env_action(action))
        # from_numpy of fresh float32 copies: as_tensor with a dtype costs 2-5x as much at this size.
        # The copy matters: the vector env (copy=False) overwrites its array at the next step.
        self.obs = next_obs = torch.from_numpy(np.array(next_obs_np, dtype=np.float32))
        done = terminated | truncated
        finished = []
        self.episode_return += reward
        self.episode_length += 1
        if done.any():
            next_obs = self.obs.clone()
            for i in np.flatnonzero(done):
                next_obs[i] = torch.as_tensor(info["final_obs"][i], dtype=torch.float32)
                finished.append({"return": float(self.episode_return[i]), "length": int(self.episode_length[i]), "env": int(i)})
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0
            self.state = self.actor.reset_state(self.state, torch.from_numpy(done))
        exp = {
            "obs": obs, "action": action, "reward": torch.from_numpy(reward.astype(np.float32)),
            "next_obs": next_obs, "terminated": torch.from_numpy(terminated), "truncated": torch.from_numpy(truncated),
            "extras": extras,
        }
        return exp, finished

    def close(self) -> None:
        self.vec.close()

    def state_dict(self):
        snaps = list(self.vec.call("get_snapshot"))
        return {"obs": self.obs.clone(), "episode_return": torch.from_numpy(self.episode_return.copy()),
                "episode_length": torch.from_numpy(self.episode_length.copy()), "snapshots": json.dumps(snaps),
                "actor_state": [] if isinstance(self.state, tuple) else [self.state.clone()]}

    def load_state_dict(self, state):
        """Restore observations, episode statistics and every env's exact state.

        Raises:
            CheckpointError: arrays of another shape or env snapshots that this env did not make.
        """
        shapes = {"obs": tuple(self.obs.shape), "episode_return": (self.num_envs,), "episode_length": (self.num_envs,)}
        for key, shape in shapes.items():
            if not isinstance(state[key], torch.Tensor) or tuple(state[key].shape) != shape:
                raise CheckpointError(f"the checkpoint's env.{key} does not have shape {shape} ({self.num_envs} "
                                      f"{self.env_id} envs); resume with the run's own config.json")
        actor_state = state.get("actor_state", [])
        if isinstance(self.state, tuple) != (len(actor_state) == 0) or (
                actor_state and tuple(actor_state[0].shape) != tuple(self.state.shape)):
            raise CheckpointError(f"the checkpoint's actor state ({[tuple(s.shape) for s in actor_state]}) does not fit "
                                  "this policy's; resume with the run's own config.json")
        try:
            self.vec.call("set_snapshot", json.loads(state["snapshots"]))
        except Exception as e:  # noqa: BLE001 - a worker process re-raises what set_snapshot raised
            text = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"the checkpoint's env snapshots do not fit {self.env_id} ({text}); resume from "
                                  "an earlier checkpoint") from None
        if actor_state:
            self.state = actor_state[0].to(self.state.device, self.state.dtype).clone()
        self.obs = state["obs"].to(torch.float32).clone()
        self.episode_return = state["episode_return"].numpy().astype(np.float64)
        self.episode_length = state["episode_length"].numpy().astype(np.int64)
