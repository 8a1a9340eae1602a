"""Deterministic evaluation on the environment's own reward."""
from __future__ import annotations

import numpy as np

from prefrl.environment import make_env


def evaluate(policy, env_id: str, episodes: int, seed: int = 0) -> dict:
    """Run ``episodes`` deterministic episodes of an SB3 policy; true-return mean/std.

    Returns ``{"true_return_mean", "true_return_std", "eval_episodes", "episode_lengths"}``.
    """
    env = make_env(env_id, record_states=False)
    returns, lengths = [], []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + 10_000 + i)
            total, steps, done = 0.0, 0, False
            while not done:
                action, _ = policy.predict(obs, deterministic=True)
                obs, reward, terminated, truncated, _ = env.step(action)
                total, steps, done = total + float(reward), steps + 1, terminated or truncated
            returns.append(total)
            lengths.append(steps)
    finally:
        env.close()
    return {"true_return_mean": float(np.mean(returns)) if returns else float("nan"),
            "true_return_std": float(np.std(returns)) if returns else float("nan"),
            "eval_episodes": episodes, "episode_lengths": lengths}
