"""Runs: check a request, create or reopen a run directory, train, resume and evaluate.

``request`` (every check on user input, shared by ``train`` and ``sweep``), ``session`` (the run
directory, the training loop and its signals, resume), ``backend`` (``--backend ray``) and
``evaluation`` (``rlblocks eval``, video).

A run directory holds ``config.json`` (algo, env, seed, resolved hyperparameters, run options),
``progress.csv``, ``eval.csv``, ``tb/`` (TensorBoard), ``checkpoints/`` and ``.lock``.

Guarantees (tested in ``tests/test_run_integrity.py``):

* every check that can fail on user input (ids, spaces, hyperparameters, seed, memory) happens
  before the run directory is created; a start-up that fails or is interrupted removes what it made;
* one process at a time trains or resumes a run (:class:`rlblocks.rundir.RunLock`), and it first
  removes the temporaries of killed writers;
* Ctrl-C (SIGINT) and SIGTERM finish the current step, save a checkpoint and raise
  :class:`rlblocks.errors.Interrupted` (the CLI exits 130 / 143);
* rows logged after the checkpoint a run resumes from are dropped only once training continues.
"""

from rlblocks.load import LoadSource, check_load_source, load_weights
from rlblocks.run.backend import BACKENDS, backend_session, check_backend, layout_options
from rlblocks.run.evaluation import HEADLESS_HINT, evaluate_run
from rlblocks.run.request import (
    MAX_SEED,
    RunRequest,
    check_env_fits,
    check_seed,
    check_threads,
    default_run_dir,
    make_request,
    resolve_config,
    resolve_device,
    resolve_run,
)
from rlblocks.run.session import _close, load_run_agent, resume_run, train

__all__ = ["BACKENDS", "HEADLESS_HINT", "MAX_SEED", "LoadSource", "RunRequest", "_close", "backend_session",
           "check_backend", "check_env_fits", "check_load_source", "check_seed", "check_threads", "default_run_dir",
           "evaluate_run", "layout_options", "load_run_agent", "load_weights", "make_request", "resolve_config",
           "resolve_device", "resolve_run", "resume_run", "train"]
