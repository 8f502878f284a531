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


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal (Ctrl-C = SIGINT, or SIGTERM) after saving a checkpoint.

    A ``KeyboardInterrupt``, so code that does not expect it stops as on a plain Ctrl-C. The CLI
    exits with :attr:`exit_code` (128 + signal number: 130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int, saved: bool = True):
        import signal

        self.signum, self.saved = signum, saved
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class NonFiniteError(RLBlocksError):
    """A loss (or a weight about to be checkpointed) became NaN or Inf: training stops with one line
    naming it, and the latest checkpoint, saved before, keeps the last good weights."""


#: ``errno`` values of a write the machine refused (no space, quota, file-size limit, read-only disk):
#: the user's environment to fix, not a bug, so the CLI reports them in one line.
WRITE_ERRNOS = frozenset(("ENOSPC", "EDQUOT", "EFBIG", "EROFS"))


def write_failure(e: OSError) -> str | None:
    """One line for a refused write (see :data:`WRITE_ERRNOS`), naming the file and the fix; ``None``
    for any other ``OSError``."""
    import errno

    if errno.errorcode.get(e.errno or 0) not in WRITE_ERRNOS:
        return None
    where = f" {e.filename}" if e.filename else ""
    return (f"writing{where} failed ({e.strerror or e}); free disk space (or raise the limit), then "
            "`rlblocks resume RUN_DIR` continues from the last complete checkpoint")
