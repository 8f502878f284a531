"""The ``events`` module: faults survived during a run, one line each in ``events.log``."""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path

from rlblocks.module import Module


class EventLog(Module):
    """Appends ``<ISO time> env_steps=<N> <message>`` lines to ``<run_dir>/events.log`` and echoes
    them on stderr: an env rebuilt after it raised, a Ray worker restarted, a rollout collected again.

    Modules reach it as ``agent.events`` (or ``agent.modules.get("events")``, absent in agents
    without a run directory, where messages go to stderr only through :func:`log_event`).

    Args:
        run_dir: the run directory; ``None`` writes no file.
        echo: also print each line on stderr.
    """

    name = "events"

    def __init__(self, run_dir: Path | None, echo: bool = True):
        super().__init__()
        self.path = Path(run_dir) / "events.log" if run_dir is not None else None
        self.echo = echo
        self.count = 0  # events logged in this session

    def log(self, message: str) -> None:
        """Append one line (``message`` must be one line)."""
        steps = self.agent.env_steps if self.agent is not None else 0
        line = f"{_dt.datetime.now().isoformat(timespec='seconds')} env_steps={steps} {message}"
        self.count += 1
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(line + "\n")
        if self.echo:
            print(f"rlblocks: event: {message}", file=sys.stderr, flush=True)


def log_event(agent, message: str) -> None:
    """``agent.events.log(message)`` when the agent has an ``events`` module, else a line on stderr."""
    events = agent.modules.get("events") if agent is not None else None
    if events is not None:
        events.log(message)
    else:
        print(f"rlblocks: event: {message}", file=sys.stderr, flush=True)
