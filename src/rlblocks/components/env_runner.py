"""The ``env`` module: owns the vector env, steps it with the agent's policy."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import torch

from rlblocks.components.events import log_event
from rlblocks.envs import make_vec_env
from rlblocks.envs.goal import GOAL_KEYS, SUCCESS_KEYS, is_goal_space, obs_to_tensor, success_flags
from rlblocks.envs.recover import ERROR_KEY
from rlblocks.envs.snapshot import CUT_KEY
from rlblocks.errors import CheckpointError, RLBlocksError
from rlblocks.module import Actor, Closeable, Module


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

    An env that raises in ``step`` is rebuilt (:class:`~rlblocks.envs.recover.RebuildOnError`): that
    step becomes a truncation at the last good observation with reward 0, the episode is dropped
    from ``finished`` (its return is not reported) and the event goes to ``events.log``
    (:class:`~rlblocks.components.events.EventLog`); ``env_errors`` counts such steps.

    Box actions are mapped affinely from [-1, 1] to the env's ``[low, high]``; Discrete actions
    (integer tensors ``[num_envs]``) pass as they are.

    Goal envs (dict observations ``{observation, achieved_goal, desired_goal}``, see
    :mod:`rlblocks.envs.goal`): ``obs`` and ``next_obs`` are dicts of ``[num_envs, dim]`` tensors,
    and each finished episode also reports ``"success"`` (the env's success flag at its last step:
    ``info["is_success"]``, or ``info["success"]`` for the maze tasks; see
    :func:`~rlblocks.envs.goal.success_flags`).

    Args:
        env_id, num_envs, mode: see :func:`rlblocks.envs.make_vec_env`.
        seed: env ``i`` is reset with ``seed + i``.
        info_keys: the envs' own info keys to keep (none by default: nothing here reads them,
            and the vector env spends time merging them; see :class:`~rlblocks.envs.make.KeepInfoKeys`).
        allow_goal: accept goal envs' dict observations (off-policy algorithms); otherwise only a
            flat Box is accepted.

    Raises:
        RLBlocksError: observations that are neither a flat Box nor (with ``allow_goal``) a goal dict.
    """

    name = "env"
    requires = ("policy",)

    def __init__(self, env_id: str, num_envs: int, seed: int, mode: str = "sync", info_keys: tuple[str, ...] = (),
                 allow_goal: bool = False):
        super().__init__()
        self.env_id, self.num_envs, self.seed, self.mode = env_id, num_envs, seed, mode
        # a goal env's success flag is kept (a key the env lacks costs one dict lookup per step)
        keys = (*info_keys, *SUCCESS_KEYS) if allow_goal else info_keys
        self.vec = make_vec_env(env_id, num_envs, mode, info_keys=keys, copy=False, recover=True)
        self.obs_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        #: dict observations of a goal env (``allow_goal``): per-key tensors, success reported
        self.goal = allow_goal and is_goal_space(self.obs_space)
        if not self.goal and not isinstance(self.obs_space, gym.spaces.Box):
            raise RLBlocksError(f"{env_id} has {self.obs_space} observations; this algorithm needs a flat Box")
        self.continuous = isinstance(self.action_space, gym.spaces.Box)
        self._rescale = False
        if self.continuous:
            low, high = self.action_space.low, self.action_space.high
            self._scale, self._offset = (high - low) / 2.0, (high + low) / 2.0
            self._rescale = not (np.all(self._scale == 1.0) and np.all(self._offset == 0.0))
        self.actor: Actor | None = None  # set in setup()
        self.restart(seed)
        self.env_errors = 0  # steps where an env raised and was rebuilt (this session)
        #: ``(env index, message)`` of the env failures of the latest step (read by Ray workers)
        self.last_errors: list[tuple[int, str]] = []

    def setup(self) -> None:
        self.actor: Actor = self.agent.policy
        if not isinstance(self.actor, Actor):
            raise RLBlocksError(f"the policy module {type(self.actor).__name__} is not an Actor (rlblocks.module.Actor)")
        self.state = self.actor.initial_state(self.num_envs)

    def restart(self, seed: int) -> None:
        """Start new episodes in every env, env ``i`` reset with ``seed + i``; episode sums and actor
        states start again."""
        obs, _ = self.vec.reset(seed=seed)
        self.obs = obs_to_tensor(obs)  # a copy: the vector env reuses its array
        self.episode_return = np.zeros(self.num_envs)
        self.episode_length = np.zeros(self.num_envs, dtype=np.int64)
        if self.actor is not None:  # set up already
            self.state = self.actor.initial_state(self.num_envs)

    def to_env_action(self, action: torch.Tensor) -> np.ndarray:
        a = action.numpy()
        return a * self._scale + self._offset if self._rescale else a  # [-1, 1] boxes pass as they are

    def step(self, env_steps: int | None = None):
        """One vector step with the actor exploring at ``env_steps`` env steps of the run (default:
        the agent's count; a Ray worker passes the learner's)."""
        obs = self.obs
        t = self.agent.env_steps if env_steps is None else env_steps
        action, self.state, extras = self.actor.act(obs, self.state, True, False, t)
        next_obs_np, reward, terminated, truncated, info = self.vec.step(self.to_env_action(action))
        if self.goal:
            self.obs = next_obs = obs_to_tensor(next_obs_np)
        else:
            # from_numpy of fresh float32 copies: as_tensor with a dtype costs 2-5x as much at this size.
            # The copy matters: the vector env (copy=False) overwrites its array at the next step.
            self.obs = next_obs = torch.from_numpy(np.array(next_obs_np, dtype=np.float32))
        reward_t = torch.from_numpy(reward.astype(np.float32))
        self.state = self.actor.observe(self.state, reward_t)
        done = terminated | truncated
        finished = []
        if self.last_errors:  # cleared only after a failure: no list per step
            self.last_errors = []
        self.episode_return += reward
        self.episode_length += 1
        if done.any():
            next_obs = self._final_obs(done, info["final_obs"])
            success = success_flags(info.get("final_info", {})) if self.goal else None
            finished = self._end_episodes(done, success)
            final_info = info.get("final_info", {})
            if ERROR_KEY in final_info:  # an env raised and was rebuilt: drop its cut episode, log the event
                finished = self._drop_failed(finished, final_info)
            if CUT_KEY in final_info:  # an episode a checkpoint could not restore: cut, dropped, logged
                finished = self._drop_cut(finished, final_info)
            # SAME_STEP autoreset: self.obs is already the next episode's first observation
            self.state = self.actor.reset_state(self.state, torch.from_numpy(done))
        exp = {"obs": obs, "action": action, "reward": reward_t,
               "next_obs": next_obs, "terminated": torch.from_numpy(terminated),
               "truncated": torch.from_numpy(truncated), "extras": extras}
        return exp, finished

    def _drop_failed(self, finished: list[dict], info: dict) -> list[dict]:
        """``finished`` without the episodes of envs that raised on this step (``info``: the step's
        ``final_info``); logs each failure."""
        failed = {int(i) for i in np.flatnonzero(info[f"_{ERROR_KEY}"])}
        self.last_errors = [(i, str(info[ERROR_KEY][i])) for i in sorted(failed)]
        self.env_errors += len(failed)
        lengths = {ep["env"]: ep["length"] for ep in finished}
        for i, text in self.last_errors:
            log_event(self.agent, f"env {i} of {self.env_id} raised ({text}); rebuilt it and dropped its episode "
                                  f"({lengths.get(i, 0)} steps)")
        return [ep for ep in finished if ep["env"] not in failed]

    def _drop_cut(self, finished: list[dict], info: dict) -> list[dict]:
        """``finished`` without the episodes that a resume could not restore (see
        :class:`~rlblocks.envs.snapshot.Snapshot`), each logged once."""
        cut = {int(i) for i in np.flatnonzero(info[f"_{CUT_KEY}"])}
        lengths = {ep["env"]: ep["length"] for ep in finished}
        for i in sorted(cut):
            log_event(self.agent, f"env {i} of {self.env_id}: the episode in progress at the checkpoint could not be "
                                  f"restored ({info[CUT_KEY][i]}); it was cut there after {lengths.get(i, 0) - 1} steps "
                                  "(a truncation with reward 0, not counted in the returns) and a new episode started")
        return [ep for ep in finished if ep["env"] not in cut]

    def _final_obs(self, done: np.ndarray, final_obs) -> torch.Tensor | dict[str, torch.Tensor]:
        """The step's next observations with the true last observation where an episode ended."""
        if not self.goal:
            next_obs = self.obs.clone()
            for i in np.flatnonzero(done):
                next_obs[i] = torch.as_tensor(final_obs[i], dtype=torch.float32)
            return next_obs
        next_obs = {k: v.clone() for k, v in self.obs.items()}
        for i in np.flatnonzero(done):
            for k in GOAL_KEYS:
                next_obs[k][i] = torch.as_tensor(final_obs[i][k], dtype=torch.float32)
        return next_obs

    def _end_episodes(self, done: np.ndarray, success: np.ndarray | None = None) -> list[dict]:
        """``{"return", "length", "env"[, "success"]}`` of the episodes ending where ``done``; resets their sums."""
        finished = []
        for i in np.flatnonzero(done):
            episode = {"return": float(self.episode_return[i]), "length": int(self.episode_length[i]), "env": int(i)}
            if success is not None:
                episode["success"] = float(success[i])
            finished.append(episode)
        self.episode_return[done] = 0.0
        self.episode_length[done] = 0
        return finished

    def close(self) -> None:
        self.vec.close()

    def state_dict(self):
        snaps = list(self.vec.call("get_snapshot"))
        obs = {k: v.clone() for k, v in self.obs.items()} if self.goal else self.obs.clone()
        return {"obs": obs, "episode_return": torch.from_numpy(self.episode_return.copy()),
                "episode_length": torch.from_numpy(self.episode_length.copy()), "snapshots": json.dumps(snaps),
                "actor_state": [] if isinstance(self.state, tuple) else [self.state.clone()]}

    def load_state_dict(self, state):
        """Restore observations, episode statistics and every env's exact state.

        Raises:
            CheckpointError: arrays of another shape or env snapshots that this env did not make.
        """
        current = self.obs if self.goal else {"": self.obs}
        shapes = {**{f"obs{'.' if k else ''}{k}": tuple(v.shape) for k, v in current.items()},
                  "episode_return": (self.num_envs,), "episode_length": (self.num_envs,)}
        saved = {"episode_return": state["episode_return"], "episode_length": state["episode_length"]}
        if self.goal:
            obs_state = state["obs"] if isinstance(state["obs"], dict) else {}
            saved.update({f"obs.{k}": obs_state.get(k) for k in GOAL_KEYS})
        else:
            saved["obs"] = state["obs"]
        for key, shape in shapes.items():
            if not isinstance(saved[key], torch.Tensor) or tuple(saved[key].shape) != shape:
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
        if self.goal:
            self.obs = {k: state["obs"][k].to(torch.float32).clone() for k in GOAL_KEYS}
        else:
            self.obs = state["obs"].to(torch.float32).clone()
        self.episode_return = state["episode_return"].numpy().astype(np.float64)
        self.episode_length = state["episode_length"].numpy().astype(np.int64)
