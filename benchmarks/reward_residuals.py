#!/usr/bin/env python
"""Where does a preference run's final learned reward differ from the true one? By steps to the end.

Both final policies of a `vs_true_reward.py` pair play stochastic episodes (as in training).
The learned reward (as the agent sees it) is fitted to the true one on steps at least 30
steps from an episode's end, ``learned ≈ c · true``; the residual ``learned / c − true``, in
the true reward's units, is then reported by how many steps remain until the episode
terminated: 0 is the step that ended it (a Hopper's fall), where Hopper-v5's true reward
no longer pays its healthy bonus.

    python benchmarks/reward_residuals.py /tmp/hd2/runs --seeds 8 9 13 --episodes 12
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO

from cross_score import learned_reward
from prefrl.environment import make_env
from prefrl.evaluation import play_episodes

BANDS = ((0, 0), (1, 4), (5, 14), (15, 29))


def episode_steps(policy, env, reward, episodes: int) -> np.ndarray:
    """``[steps, 3]``: steps until termination (a large number if the episode did not terminate), true, learned."""
    rows = []
    for e in play_episodes(policy, env, episodes, seed=2000, score=reward, deterministic=False):
        n = len(e["steps"])
        rows += [(n - 1 - i if e["terminated"] else 10**6, true, learned) for i, (true, learned) in enumerate(e["steps"])]
    return np.asarray(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="a folder of pair run folders (ENV-sSEED-pref, ENV-sSEED-true)")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--episodes", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    env = make_env(args.env, record_states=False)
    for seed in args.seeds:
        reward = learned_reward(args.runs / f"{args.env}-s{seed}-pref", env)
        for who in ("pref", "true"):
            policy = PPO.load(args.runs / f"{args.env}-s{seed}-{who}" / "policy.zip", device="cpu")
            rows = episode_steps(policy, env, reward, args.episodes)
            far = rows[:, 0] >= 30
            c = float(np.sum(rows[far, 1] * rows[far, 2]) / np.sum(rows[far, 1] ** 2))
            residual = rows[:, 2] / c - rows[:, 1]
            out = {"seed": seed, "policy": who, "scale": c, "far_residual_mean": float(residual[far].mean()),
                   "far_residual_std": float(residual[far].std()), "far_true_mean": float(rows[far, 1].mean())}
            for lo, hi in BANDS:
                band = (rows[:, 0] >= lo) & (rows[:, 0] <= hi)
                out[f"to_end_{lo}_{hi}"] = {"steps": int(band.sum()), "true_mean": float(rows[band, 1].mean()),
                                            "residual_mean": float(residual[band].mean())} if band.any() else None
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
