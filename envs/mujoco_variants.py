"""Hopper and Walker2d that keep going after a fall, and pay for it in the true reward.

Christiano et al. 2017 (§3.1, A.1) point out that "the episode ends when you fall" leaks
reward information: with a learned reward that is positive on average, merely staying
alive earns reward, so an agent learns to survive without any preference feedback. They
therefore remove such terminations and replace them with a penalty in the true reward
(which only the synthetic labeler and the evaluation ever see). These variants do that.

Default ``fall_penalty = 1.0``: in the v5 envs a healthy step already earns
``healthy_reward = 1``, which an unhealthy step loses; a further 1 makes a fallen step
cost about as much as a standing step earns, so lying on the floor is clearly worse than
standing, without drowning the forward-velocity term (a few units per step when running)
that the task is about.
"""
from __future__ import annotations

from gymnasium import utils
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv


class _FallPenalty:
    """Mixin: never terminate when unhealthy; subtract ``fall_penalty`` on unhealthy steps."""

    def _setup_fall_penalty(self, fall_penalty: float, **kwargs) -> None:
        self.fall_penalty = float(fall_penalty)
        # Re-record the constructor args so pickling/copying keeps fall_penalty.
        utils.EzPickle.__init__(self, fall_penalty=fall_penalty, **kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        # is_healthy looks at the state after the action, as the original termination did.
        fallen = not self.is_healthy
        info["reward_fall"] = -self.fall_penalty * fallen
        return obs, reward - self.fall_penalty * fallen, terminated, truncated, info


class HopperNoTermEnv(_FallPenalty, HopperEnv):
    """Hopper-v5 with ``terminate_when_unhealthy=False`` and a fall penalty (see module doc)."""

    def __init__(self, fall_penalty: float = 1.0, **kwargs):
        super().__init__(terminate_when_unhealthy=False, **kwargs)
        self._setup_fall_penalty(fall_penalty, **kwargs)


class Walker2dNoTermEnv(_FallPenalty, Walker2dEnv):
    """Walker2d-v5 with ``terminate_when_unhealthy=False`` and a fall penalty (see module doc)."""

    def __init__(self, fall_penalty: float = 1.0, **kwargs):
        super().__init__(terminate_when_unhealthy=False, **kwargs)
        self._setup_fall_penalty(fall_penalty, **kwargs)
