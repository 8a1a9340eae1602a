"""Deterministic evaluation on the environment's own reward."""
from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

from prefrl.environment import make_env


def evaluate(policy, env_id: str, episodes: int, seed: int = 0) -> dict:
    """Run ``episodes`` deterministic episodes of an SB3 policy; true-return mean/std.

    Returns ``{"true_return_mean", "true_return_std", "eval_episodes", "episode_lengths"}``.
    """
    env = make_env(env_id, record_states=False)
    try:
        played = play_episodes(policy, env, episodes, seed=seed + 10_000)
    finally:
        env.close()
    returns = [e["true_return"] for e in played]
    return {"true_return_mean": float(np.mean(returns)) if returns else float("nan"),
            "true_return_std": float(np.std(returns)) if returns else float("nan"),
            "eval_episodes": episodes, "episode_lengths": [e["length"] for e in played]}


def play_episodes(policy, env: gym.Env, episodes: int, seed: int,
                  score: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                  deterministic: bool = True) -> list[dict]:
    """Episodes ``i`` from ``env.reset(seed=seed + i)`` (the policy's mean action unless not
    ``deterministic``): ``{"true_return", "length", "terminated"}`` each (``terminated``: ended by
    the env, not a time limit), plus, when ``score(obs [1, obs_dim], act [1, act_dim]) -> [1]`` is
    given (e.g. a reward ensemble's ``predict``: what a preference agent was trained on),
    ``"learned_return"`` and ``"steps"``, the ``(true, learned)`` reward of every step."""
    from prefrl.vec_env import encode_actions

    played = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        episode, done = {"true_return": 0.0, "length": 0, **({"learned_return": 0.0, "steps": []} if score else {})}, False
        while not done:
            action, _ = policy.predict(obs, deterministic=deterministic)
            if score is not None:
                flat = np.asarray(obs, dtype=np.float32).reshape(1, -1)
                learned = float(score(flat, encode_actions(env.action_space, action[None]))[0])
                episode["learned_return"] += learned
            obs, reward, terminated, truncated, _ = env.step(action)
            if score is not None:
                episode["steps"].append((float(reward), learned))
            episode["true_return"] += float(reward)
            episode["length"] += 1
            done = terminated or truncated
        episode["terminated"] = bool(terminated)
        played.append(episode)
    return played
