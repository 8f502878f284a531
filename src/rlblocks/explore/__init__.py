"""Exploration: action noise processes."""

from rlblocks.explore.noise import GaussianNoise, OrnsteinUhlenbeckNoise, make_noise

__all__ = ["GaussianNoise", "OrnsteinUhlenbeckNoise", "make_noise"]
