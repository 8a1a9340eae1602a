"""The one place where the learned reward reaches the agent: a small SB3 VecEnvWrapper."""
from __future__ import annotations

import time
from collections import deque
from typing import Callable

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from prefrl.buffer import TrajectoryBuffer
from prefrl.environment import data_state, is_image_space, is_mujoco


def encode_actions(space: gym.Space, actions: np.ndarray) -> np.ndarray:
    """Actions as the reward model sees them: ``[n, act_dim]`` float32 (one-hot for Discrete)."""
    if isinstance(space, gym.spaces.Discrete):
        return np.eye(space.n, dtype=np.float32)[np.asarray(actions, dtype=np.int64).reshape(-1) - space.start]
    return np.asarray(actions, dtype=np.float32).reshape(len(actions), -1)


def action_dim(space: gym.Space) -> int:
    return int(space.n) if isinstance(space, gym.spaces.Discrete) else int(np.prod(space.shape))


def _sim_data(venv: VecEnv) -> list | None:
    """Each env's MuJoCo ``data`` where all the envs run in this process and on MuJoCo, else None."""
    envs = getattr(venv, "envs", None)
    if not envs or not all(is_mujoco(env) for env in envs):
        return None
    return [env.unwrapped.data for env in envs]


class LearnedRewardVecEnv(VecEnvWrapper):
    """Replaces the environment's reward with ``reward_fn(obs, acts)`` and records experience.

    The true reward never reaches the agent; it goes into the buffer (for synthetic oracles)
    and into ``info["true_reward"]``. Episode statistics from a ``Monitor`` below this
    wrapper stay on the true reward, which is what we want in the logs.

    Args:
        venv: the vectorized environments.
        reward_fn: ``(obs [n, obs_dim], acts [n, act_dim]) -> rewards [n]``; image observations
            are passed as they are (uint8 ``[n, *obs_shape]``), others flattened to float32.
        buffer: receives every step (obs before the action, action, true reward, sim state).

    ``cpu_seconds`` adds up the CPU time spent here (the learned reward, the buffer) beyond
    the wrapped envs' own steps.

    After :meth:`defer` the steps return reward 0 and the learned rewards of the latest
    steps come from :meth:`deferred_rewards` in one batch (see :func:`defer_to_rollouts`).

    MuJoCo states are read here, from each env's ``data`` once it has produced an observation
    (after a reset or a step, automatic resets included), when the envs live in this process
    (a ``DummyVecEnv``): through ``info["sim_state"]``
    (:class:`~prefrl.environment.RecordSimState`) each state would also pass through one more
    wrapper and be deep-copied with the infos on every step (~0.08 s CPU per 100k Hopper
    steps). Other VecEnvs give states through ``info["sim_state"]``.
    """

    def __init__(self, venv: VecEnv, reward_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 buffer: TrajectoryBuffer):
        super().__init__(venv)
        self.reward_fn, self.buffer = reward_fn, buffer
        self._flatten = not is_image_space(venv.observation_space)  # frames stay uint8 images
        self._obs = self._actions = self._states = None
        self._data = _sim_data(venv)
        self._pending: deque | None = None  # (obs, acts) of the latest steps, when rewards are deferred
        self.cpu_seconds = 0.0

    def reset(self):
        self.buffer.end_episodes()
        self._obs, self._states = self.venv.reset(), self._read_states()
        return self._obs

    def _read_states(self) -> list[np.ndarray] | None:
        """Each env's MuJoCo state now: the one its latest observation came from."""
        return None if self._data is None else [data_state(data) for data in self._data]

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions
        self.venv.step_async(actions)

    def step_wait(self):
        obs, true_rewards, dones, infos = self.venv.step_wait()
        start = time.process_time()
        flat_obs = self._obs.reshape(self.num_envs, -1).astype(np.float32, copy=False) if self._flatten else self._obs
        acts = encode_actions(self.action_space, self._actions)
        states = self._states or [info.get("sim_state") for info in infos]
        frames = [info.get("frame") for info in infos]
        truncated = np.array([info.get("TimeLimit.truncated", False) for info in infos]) if dones.any() else None
        self.buffer.add(flat_obs, acts, true_rewards, dones, states if states[0] is not None else None,
                        frames if frames[0] is not None else None, truncated=truncated)
        for info, r in zip(infos, true_rewards):
            info["true_reward"] = float(r)
        self._obs, self._states = obs, self._read_states()
        if self._pending is None:
            rewards = self.reward_fn(flat_obs, acts).astype(np.float32)
        else:
            self._pending.append((flat_obs, acts))
            rewards = np.zeros(self.num_envs, np.float32)
        self.cpu_seconds += time.process_time() - start
        return obs, rewards, dones, infos

    def defer(self, steps: int) -> None:
        """From now on return reward 0 and keep the inputs of the latest ``steps`` steps."""
        self._pending = deque(maxlen=steps)

    def deferred_rewards(self, rows: int = 256) -> np.ndarray:
        """The learned reward of the latest steps kept by :meth:`defer`: ``[steps, n_envs]``,
        computed ``rows`` at a time (a batch of Atari frames through the CNN is large)."""
        start = time.process_time()
        steps = len(self._pending)
        obs = np.concatenate([o for o, _ in self._pending])
        acts = np.concatenate([a for _, a in self._pending])
        self._pending.clear()
        rewards = np.concatenate([self.reward_fn(obs[i:i + rows], acts[i:i + rows]) for i in range(0, len(obs), rows)])
        self.cpu_seconds += time.process_time() - start
        return rewards.astype(np.float32).reshape(steps, self.num_envs)


def defer_to_rollouts(agent, venv: LearnedRewardVecEnv) -> None:
    """Give an on-policy agent (SB3 PPO) the learned reward once per rollout, in one batch.

    PPO reads rewards only when a rollout is complete, to compute returns and advantages;
    until then the steps carry reward 0 plus, where a time limit cut an episode, the
    discounted value SB3 adds to bootstrap it. Here the learned rewards of the whole rollout
    are added just before that computation: one batch of matrix products per rollout instead
    of a few small ones per step (about a dozen NumPy calls, ~15 µs, on each of a million
    steps). The reward model changes only between calls to ``learn``, never within a rollout.

    Only the live rollout buffer is patched; the saved model is plain PPO.
    """
    buffer = agent.rollout_buffer
    venv.defer(buffer.buffer_size)
    compute = buffer.compute_returns_and_advantage

    def with_learned_rewards(last_values, dones) -> None:
        buffer.rewards += venv.deferred_rewards()
        compute(last_values=last_values, dones=dones)

    buffer.compute_returns_and_advantage = with_learned_rewards
