"""A 2-D point that should move to a goal: tiny, fast continuous control for tests.

The real tasks (MuJoCo, Atari) take minutes to hours to learn; this one takes seconds, so
the whole preference loop (Christiano et al. 2017, §2.2) can run end to end in a test and be
compared against PPO on the true reward.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

_LIMIT = 1.5  # the point is kept inside [-1.5, 1.5]²
_SPEED = 0.1  # distance moved per step at full action
_SIZE = 64  # rendered frames are _SIZE x _SIZE RGB

# Pixel centres, reused by every render: a frame is a handful of vectorised masks.
_PIX = (np.arange(_SIZE) + 0.5) / _SIZE * 2 * _LIMIT - _LIMIT
_X, _Y = np.meshgrid(_PIX, -_PIX)  # image row 0 is the top, i.e. y = +_LIMIT


class PointGoalEnv(gym.Env):
    """Observation ``[pos_x, pos_y, goal_x, goal_y]`` (float32), action ``Box(-1, 1, (2,))``.

    Each step moves the point by ``0.1 * clip(action, -1, 1)``; the reward is
    ``-‖pos − goal‖``. Start and goal are uniform in ``[-1, 1]²``. The episode never
    terminates; registration adds the 50-step time limit (truncation).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None):
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode {render_mode!r} not in {self.metadata['render_modes']}")
        self.render_mode = render_mode
        high = np.array([_LIMIT, _LIMIT, 1.0, 1.0], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._pos = np.zeros(2)
        self._goal = np.zeros(2)

    # -- episode start: subclasses change where the point and goal are put -------------
    def _sample_start(self) -> np.ndarray:
        return self.np_random.uniform(-1.0, 1.0, size=2)

    def _sample_goal(self) -> np.ndarray:
        return self.np_random.uniform(-1.0, 1.0, size=2)

    def _obs(self) -> np.ndarray:
        return np.concatenate([self._pos, self._goal]).astype(np.float32)

    def _distance(self) -> float:
        return float(np.linalg.norm(self._pos - self._goal))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._goal = self._sample_goal()
        self._pos = self._sample_start()
        return self._obs(), {"distance": self._distance()}

    def step(self, action):
        move = _SPEED * np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self._pos = np.clip(self._pos + move, -_LIMIT, _LIMIT)
        distance = self._distance()
        return self._obs(), -distance, False, False, {"distance": distance}

    def render(self):
        """A 64x64 uint8 frame: the goal as a green dot, the point as a blue one."""
        if self.render_mode != "rgb_array":
            return None
        frame = np.full((_SIZE, _SIZE, 3), 235, dtype=np.uint8)
        self._draw_background(frame)
        frame[self._dot(self._goal, 0.12)] = (40, 170, 60)
        frame[self._dot(self._pos, 0.09)] = (40, 70, 200)
        return frame

    def _draw_background(self, frame: np.ndarray) -> None:
        frame[(np.abs(_X) <= 1.0) & (np.abs(_Y) <= 1.0)] = 250  # where starts and goals lie

    @staticmethod
    def _dot(center: np.ndarray, radius: float) -> np.ndarray:
        return (_X - center[0]) ** 2 + (_Y - center[1]) ** 2 <= radius**2


class PointGoalFallEnv(PointGoalEnv):
    """PointGoal on a disk: the episode *terminates* when ‖pos‖ > ``fall_radius``.

    Starts lie just inside the edge, so a random policy falls off within a few steps: the
    env exists to show that short episodes never stall the preference loop.

    Because every reward is negative, ending an episode early would by itself *raise* the
    return, and falling would be the best thing to do. The falling step therefore also
    costs ``fall_penalty`` so that the true reward (and thus a synthetic labeler, §3.1)
    prefers staying on the disk; 10 is about what a typical off-goal episode costs in
    total, so falling off is worse than wandering but does not swamp the distance signal.
    Goals are drawn inside the disk (well clear of the edge) so that every goal is reachable.
    """

    def __init__(self, render_mode: str | None = None, fall_radius: float = 1.2,
                 fall_penalty: float = 10.0):
        super().__init__(render_mode=render_mode)
        if not 0.2 < fall_radius:
            raise ValueError(f"fall_radius must be > 0.2, got {fall_radius}")
        self.fall_radius = float(fall_radius)
        self.fall_penalty = float(fall_penalty)

    def _sample_start(self) -> np.ndarray:
        # 0.02–0.08 inside the edge: a random walk of ~0.06 per step crosses it in a few steps.
        angle = self.np_random.uniform(0.0, 2 * np.pi)
        radius = min(self.fall_radius, _LIMIT) - self.np_random.uniform(0.02, 0.08)
        return radius * np.array([np.cos(angle), np.sin(angle)])

    def _sample_goal(self) -> np.ndarray:
        reach = min(1.0, self.fall_radius - 0.2)
        while True:  # rejection sampling: uniform in the square, kept inside the disk
            goal = self.np_random.uniform(-1.0, 1.0, size=2)
            if np.linalg.norm(goal) <= reach:
                return goal

    def step(self, action):
        obs, reward, _, truncated, info = super().step(action)
        fell = bool(np.linalg.norm(self._pos) > self.fall_radius)
        info["fell"] = fell
        return obs, reward - self.fall_penalty * fell, fell, truncated, info

    def _draw_background(self, frame: np.ndarray) -> None:
        frame[_X**2 + _Y**2 <= self.fall_radius**2] = 250  # the disk the point must stay on
