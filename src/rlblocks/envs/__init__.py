"""Environment construction, seeding and exact state snapshots (gymnasium 1.x), and the tasks
rlblocks registers: velocity-masked POMDPs (``*NoVel-*``), dynamics-randomised MuJoCo tasks
(``*DR-v5``) and bit flipping (``BitFlip*-v0``)."""

from rlblocks.envs import bit_flip, faulty
from rlblocks.envs.dynamics import DynamicsRandomization, register_dynamics_envs
from rlblocks.envs.make import check_env_id, make_env, make_vec_env
from rlblocks.envs.pomdp import MaskVelocity, register_pomdp_envs
from rlblocks.envs.snapshot import Snapshot

register_pomdp_envs()
register_dynamics_envs()
bit_flip.register()
faulty.register()

__all__ = ["DynamicsRandomization", "MaskVelocity", "Snapshot", "check_env_id", "make_env", "make_vec_env"]
