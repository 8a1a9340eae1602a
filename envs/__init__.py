"""Environments shipped with prefrl (installed as ``prefrl.envs``).

Importing this package registers them with gymnasium under the ``prefrl/`` namespace.
Entry points are strings, so registering imports no simulator: MuJoCo is loaded only
when one of its envs is made.
"""
from __future__ import annotations

import gymnasium as gym

_ENVS = {
    # id: (entry point, max_episode_steps)
    "prefrl/PointGoal-v0": ("prefrl.envs.toy:PointGoalEnv", 50),
    "prefrl/PointGoalFall-v0": ("prefrl.envs.toy:PointGoalFallEnv", 50),
    # 1000 steps as in the originals; with no termination every episode runs this long.
    "prefrl/HopperNoTerm-v0": ("prefrl.envs.mujoco_variants:HopperNoTermEnv", 1000),
    "prefrl/Walker2dNoTerm-v0": ("prefrl.envs.mujoco_variants:Walker2dNoTermEnv", 1000),
    # Christiano et al. 2017 §3.2; 1000 steps (8 s) leaves room for several flips.
    "prefrl/HopperBackflip-v0": ("prefrl.envs.backflip:HopperBackflipEnv", 1000),
}

ENV_IDS = tuple(_ENVS)
"""The gymnasium ids this package registers."""


def register_envs() -> None:
    """Register prefrl's envs with gymnasium; a no-op for ids already registered."""
    for env_id, (entry_point, max_steps) in _ENVS.items():
        if env_id not in gym.registry:  # gymnasium warns when an id is registered twice
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_steps)


register_envs()
