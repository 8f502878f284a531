"""Algorithms: configs, agent modules and update rules."""
