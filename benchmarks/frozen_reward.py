#!/usr/bin/env python
"""Is the moving reward or its shape what holds a preference agent back? Train on it frozen.

A fresh PPO agent, with the preference run's own settings and seed, trains from scratch on
that run's *final* learned reward, which never changes: no labels, no refits, no
renormalization. The agent sees the reward exactly as ``LearnedRewardVecEnv`` gives it.
With ``--answers N`` the reward is instead a fresh ensemble fitted once, as the run's first
fit was, on the run's first N answers: how good is a reward from that few labels, if it holds still?

- If it does about as well as the preference run, the final reward's shape is the limit.
- If it does clearly better (near true-reward PPO), the reward was good enough at the end
  and the cost lies in learning under a reward that is refitted as the agent goes.

The true-return learning curve goes to ``OUT/ENV-sSEED-frozen.csv`` and a JSON line per run to
stdout, beside the preference run's and true-reward run's own final evaluations.

    python benchmarks/frozen_reward.py /tmp/b5/runs/HalfCheetah-v5-s1-pref --out /tmp/frozen
    python benchmarks/frozen_reward.py /tmp/b5/runs/Hopper-v5-s0-pref --answers 175 --out /tmp/frozen
    python benchmarks/frozen_reward.py /tmp/b5/runs/Hopper-v5-s0-pref --answers 700 --no-actions --out /tmp/frozen
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from prefrl import rundir
from prefrl.buffer import TrajectoryBuffer
from prefrl.config import build
from prefrl.environment import make_env
from prefrl.evaluation import evaluate
from prefrl.feedback import stack
from prefrl.loop import FIRST_FIT_EPOCHS, make_agent, make_vec_env
from prefrl.trainer import RewardTrainer
from prefrl.vec_env import LearnedRewardVecEnv

from cross_score import learned_reward
from refit_floor import fresh_ensemble, run_answers


def fitted_on_first(run_dir: Path, n: int, actions: bool = True):
    """A fresh ensemble fitted once, as the run's first fit was, on its first ``n`` answers, as
    ``(obs, act) -> reward``, normalized on the steps of those answers' clips. Without
    ``actions`` the model sees every action as 0: a reward of the observation alone."""
    cfg, lefts, rights, mu = run_answers(run_dir)
    (obs_l, acts_l, len_l), (obs_r, acts_r, len_r) = stack(lefts[:n]), stack(rights[:n])
    if not actions:
        acts_l, acts_r = np.zeros_like(acts_l), np.zeros_like(acts_r)
    ensemble = fresh_ensemble(cfg, obs_l, acts_l, obs_r, acts_r, n)
    RewardTrainer(ensemble, lr=cfg.reward_lr, batch_size=cfg.reward_batch_size, epochs=cfg.reward_epochs,
                  min_steps=cfg.reward_min_steps, seed=cfg.seed).fit(
        obs_l, acts_l, obs_r, acts_r, mu[:n], epochs=cfg.reward_epochs * FIRST_FIT_EPOCHS,
        lengths_left=len_l, lengths_right=len_r)
    ensemble.normalize(np.concatenate([obs_l, obs_r]).reshape(-1, obs_l.shape[-1]),
                       np.concatenate([acts_l, acts_r]).reshape(-1, acts_l.shape[-1]))
    return ensemble.predict if actions else lambda obs, acts: ensemble.predict(obs, np.zeros_like(acts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pref_run", type=Path, help="a finished preference run folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the learning curve")
    parser.add_argument("--timesteps", type=int, default=0, help="agent steps (default: the run's own)")
    parser.add_argument("--answers", type=int, default=0, help="fit on the first N answers (default: the final reward)")
    parser.add_argument("--no-actions", action="store_true", help="with --answers: a reward of the observation alone")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = build(rundir.read_run(args.pref_run)["config"])
    timesteps = args.timesteps or cfg.timesteps
    probe = make_env(cfg.env, record_states=False)
    if args.no_actions and not args.answers:
        parser.error("--no-actions needs --answers N (a fresh fit)")
    reward = (fitted_on_first(args.pref_run, args.answers, actions=not args.no_actions) if args.answers
              else learned_reward(args.pref_run, probe))
    probe.close()
    venv = make_vec_env(cfg)
    buffer = TrajectoryBuffer(cfg.n_envs, 1, 1_000)  # the wrapper records; nothing here reads it
    agent = make_agent(cfg, LearnedRewardVecEnv(venv, reward, buffer), image=False)
    args.out.mkdir(parents=True, exist_ok=True)
    name = (f"{cfg.env}-s{cfg.seed}-frozen" + (f"-first{args.answers}" if args.answers else "")
            + ("-obs-only" if args.no_actions else ""))
    curve = args.out / f"{name}.csv"
    started, cpu = time.time(), time.process_time()
    with curve.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["timesteps", "wall_seconds", "ep_true_return_mean"])
        while agent.num_timesteps < timesteps:
            agent.learn(min(cfg.refit_every, timesteps - agent.num_timesteps), reset_num_timesteps=False)
            returns = [info["r"] for info in agent.ep_info_buffer]
            writer.writerow([agent.num_timesteps, round(time.time() - started, 2),
                             float(np.mean(returns)) if returns else float("nan")])
            f.flush()
    agent.save(args.out / f"{name}.zip")  # loads with PPO.load, to look at what it learned
    final = evaluate(agent, cfg.env, cfg.eval_episodes, seed=cfg.seed)
    pair = args.pref_run.with_name(args.pref_run.name.removesuffix("pref") + "true") / "summary.json"
    row = {"env": cfg.env, "seed": cfg.seed, "answers": args.answers or "final", "timesteps": int(agent.num_timesteps),
           "actions": not args.no_actions, "frozen": final["true_return_mean"], "frozen_std": final["true_return_std"],
           "frozen_length": float(np.mean(final["episode_lengths"])),
           "pref": json.loads((args.pref_run / "summary.json").read_text())["true_return_mean"],
           "true": json.loads(pair.read_text())["true_return_mean"] if pair.exists() else None,
           "frozen_last100": float(np.mean([info["r"] for info in agent.ep_info_buffer])),
           "wall_seconds": round(time.time() - started, 1), "cpu_seconds": round(time.process_time() - cpu, 1)}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
