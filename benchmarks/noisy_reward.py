#!/usr/bin/env python
"""How much does a little reward noise cost PPO's deterministic policy? True reward plus noise.

PPO, with prefrl's default settings and the given seed, trains on the environment's own
reward plus i.i.d. Gaussian noise of std ``--sigma`` on every step (the agent's only
change), then plays the final evaluation as ``prefrl train`` does: deterministic episodes on
the true reward. ``--sigma 0`` repeats a true-reward run of the same seed to the digit.

A learned reward differs from the true one by a small error; if noise of that size already
changes the deterministic policy's return a lot while training returns hold, that final
evaluation measures the error's luck more than the reward's quality.

    python benchmarks/noisy_reward.py --env Hopper-v5 --seed 8 --sigma 0.1
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnvWrapper

from prefrl.config import TrainConfig
from prefrl.evaluation import evaluate
from prefrl.loop import make_agent, make_vec_env


class NoisyReward(VecEnvWrapper):
    """The wrapped envs' reward plus seeded Gaussian noise of std ``sigma``."""

    def __init__(self, venv, sigma: float, seed: int):
        super().__init__(venv)
        self.sigma, self.rng = sigma, np.random.default_rng([seed, 7])

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        return obs, (rewards + self.sigma * self.rng.standard_normal(len(rewards))).astype(np.float32), dones, infos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigma", type=float, required=True, help="std of the noise added to each step's reward")
    parser.add_argument("--timesteps", type=int, default=1_000_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = TrainConfig(env=args.env, seed=args.seed, timesteps=args.timesteps)
    agent = make_agent(cfg, NoisyReward(make_vec_env(cfg), args.sigma, cfg.seed), image=False)
    started = time.time()
    agent.learn(cfg.timesteps)
    final = evaluate(agent, cfg.env, cfg.eval_episodes, seed=cfg.seed)
    print(json.dumps({"env": cfg.env, "seed": cfg.seed, "sigma": args.sigma, "timesteps": int(agent.num_timesteps),
                      "eval_return": final["true_return_mean"], "eval_return_std": final["true_return_std"],
                      "eval_length": float(np.mean(final["episode_lengths"])),
                      "training_last100": float(np.mean([e["r"] for e in agent.ep_info_buffer])),
                      "wall_seconds": round(time.time() - started, 1)}))


if __name__ == "__main__":
    main()
