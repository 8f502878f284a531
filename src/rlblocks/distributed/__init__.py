"""Distributed layouts on Ray (DESIGN.md, "Roles"): the same modules given roles in other processes.

* :mod:`~rlblocks.distributed.session`: start a local Ray or join a cluster (``--ray-address``);
* :mod:`~rlblocks.distributed.workers`: the Ray actor that steps a vector env with an Actor copy,
  and the driver-side pool that sends it weights and survives its restarts;
* :mod:`~rlblocks.distributed.rollout_workers`: on-policy (PPO): synchronous rollout workers;
* :mod:`~rlblocks.distributed.interactors`: off-policy (DDPG/TD3/SAC): STEVE's asynchronous layout;
* :mod:`~rlblocks.distributed.evaluator`: an evaluator actor appending to ``eval.csv``;
* :mod:`~rlblocks.distributed.sweep`: sweep runs as Ray tasks.

Nothing here is imported unless ``--backend ray`` is asked for, and only then is ``ray`` imported.
"""
