"""One exception type for every user-facing error.

The CLI prints ``str(err)`` as a single line and exits non-zero, so messages must name the
problem *and* the fix, e.g. ``"actor_lr=-0.1 is out of range: must be > 0 (try --set actor_lr=3e-4)"``.
"""


class RLBlocksError(Exception):
    """A problem with the user's input (env id, config, run directory, checkpoint)."""


class ConfigError(RLBlocksError):
    """An invalid or unknown hyperparameter."""


class CheckpointError(RLBlocksError):
    """A missing, corrupt or foreign checkpoint."""
