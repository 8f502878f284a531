"""Environment construction, seeding and exact state snapshots (gymnasium 1.x)."""

from rlblocks.envs import bit_flip
from rlblocks.envs.make import check_env_id, make_env, make_vec_env
from rlblocks.envs.snapshot import Snapshot

bit_flip.register()

__all__ = ["Snapshot", "check_env_id", "make_env", "make_vec_env"]
