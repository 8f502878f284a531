"""``rlblocks eval``: a run's latest checkpoint evaluated, shown in a window or recorded to video."""

from __future__ import annotations

import warnings
from pathlib import Path

from rlblocks.errors import ConfigError, RLBlocksError
from rlblocks.run.session import _close, load_run_agent


def evaluate_run(run_dir: str | Path, episodes: int = 10, deterministic: bool = False, video: str | None = None,
                 render: bool = False, seed: int | None = None, device: str = "auto", video_length: int = 500,
                 video_episodes: int = 1, progress: bool = True, successes: list[float] | None = None) -> list[float]:
    """Evaluate a run's latest checkpoint; returns the ``episodes`` returns (and, for a goal env,
    puts each episode's ``is_success`` into the list ``successes`` when one is given).

    Episodes run side by side in a vector env (:func:`rlblocks.components.evaluator.evaluate`).
    ``video`` records the first ``video_episodes`` of them, at most ``video_length`` frames each
    (0: whole episodes), one at a time with a progress bar of frames; ``render`` shows every
    episode in a window.

    Raises:
        RLBlocksError: as :func:`load_run_agent`, a bad count, an unwritable video path, or a
            rendering failure (naming its cause).
    """
    from rlblocks.components.evaluator import evaluate, record

    for flag, value, low in (("--episodes", episodes, 1), ("--video-length", video_length, 0),
                             ("--video-episodes", video_episodes, 1)):
        if value < low:
            raise ConfigError(f"{flag} {value} must be >= {low}")
    if video is not None:
        _check_writable(Path(video))
    agent, record_ = load_run_agent(Path(run_dir), for_training=False, device=device)
    env_id = record_["env_id"]
    eval_seed = seed if seed is not None else record_["seed"] + 20_000
    try:
        if not agent.env.goal:
            successes = None
        if not (video or render):
            return evaluate(agent, env_id, episodes, eval_seed, deterministic, successes=successes)
        shown = episodes if render else min(video_episodes, episodes)
        with warnings.catch_warnings():  # a failed render also makes RecordVideo warn "zero frames"
            warnings.filterwarnings("ignore", message=".*zero frames.*")
            returns = record(agent, env_id, shown, eval_seed, deterministic, video_path=video,
                             video_length=video_length, progress=progress)
        return returns + (evaluate(agent, env_id, episodes - shown, eval_seed + shown, deterministic,
                                   successes=successes) if episodes > shown else [])
    except Exception as e:
        if not (video or render) or isinstance(e, RLBlocksError):
            raise
        raise RLBlocksError(_render_error(env_id, e, bool(video))) from None
    finally:
        _close(agent)


#: What headless MuJoCo rendering needs (checked on Debian 12 with mujoco 3 and software Mesa).
HEADLESS_HINT = ("headless MuJoCo rendering needs MUJOCO_GL=egl with the system packages libegl1 libopengl0 "
                 "libgl1-mesa-dri (apt-get install libegl1 libopengl0 libgl1-mesa-dri), or MUJOCO_GL=osmesa with "
                 "libosmesa6")


def _check_writable(video: Path) -> None:
    """Raise :class:`RLBlocksError` unless ``video``'s directory exists or can be made, and is writable."""
    import os

    folder = video.parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    if not existing.is_dir():
        raise RLBlocksError(f"--video {video}: {existing} is a file, so {folder} cannot be made; pass a path in a "
                            "directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RLBlocksError(f"--video {video}: {existing} is not writable; pass a path in a writable directory")


def _is_mujoco(env_id: str) -> bool:
    import gymnasium as gym

    try:
        return "mujoco" in str(gym.spec(env_id).entry_point).lower()
    except gym.error.Error:
        return False


def _render_error(env_id: str, e: Exception, video: bool) -> str:
    """A one-line explanation (with the fix) of a rendering failure in ``rlblocks eval``; the
    MuJoCo/EGL hint only where MuJoCo rendering is what failed."""
    import os

    import gymnasium as gym

    text = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    if isinstance(e, (ImportError, gym.error.DependencyNotInstalled)):
        if "moviepy" in text.lower():
            return f"--video needs moviepy ({text}); pip install moviepy (or pip install -e \".[mujoco]\")"
        return f"rendering {env_id} needs a package that is missing ({text}); install the package it names"
    if isinstance(e, OSError) and e.filename is not None:
        return f"writing {e.filename} failed ({e.strerror or text}); pass a --video path in a writable directory"
    gl = os.environ.get("MUJOCO_GL")
    if video and not _is_mujoco(env_id):
        return f"rendering {env_id} to video failed ({type(e).__name__}: {text})"
    if video:
        return f"rendering {env_id} failed with MUJOCO_GL={gl} ({type(e).__name__}: {text}); {HEADLESS_HINT}"
    return (f"showing {env_id} in a window failed ({type(e).__name__}: {text}); --render needs a working display "
            f"and MUJOCO_GL unset or glfw (it is {gl}); use --video out.mp4 on a headless machine")
