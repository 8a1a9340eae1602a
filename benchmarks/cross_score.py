#!/usr/bin/env python
"""Is the learned reward or the policy behind a gap to true-reward PPO? Score both policies with it.

For each side-by-side pair of ``benchmarks/vs_true_reward.py`` (``ENV-sSEED-pref`` and
``ENV-sSEED-true``), both final policies play the same deterministic episodes and each
episode is scored twice: by the environment's reward and by the preference run's final
learned reward (the reward its agent saw, as ``LearnedRewardVecEnv`` gives it).

If the learned reward scores the true-reward policy's episodes higher, as the true reward
does, the reward model ranks the better behaviour right and the preference agent did not
find it: the gap is in the optimization (a moving reward, its early mistakes). If it scores
the preference policy higher, the reward model is wrong where the better policy goes.

Two more figures per policy: the per-step correlation of the two rewards, and how far an
average step sits above the episode being over (the zero of both rewards) in units of each
reward's step-to-step spread. A learned reward lower there than the true one makes ending an
episode (a Hopper falling) cheaper than it is.

    python benchmarks/cross_score.py benchmarks/runs/mujoco --episodes 5
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

from stable_baselines3 import PPO

from prefrl import rundir
from prefrl.config import build
from prefrl.environment import make_env
from prefrl.evaluation import play_episodes
from prefrl.loop import make_ensemble


def final_ensemble(pref_dir: Path, env):
    """The final reward ensemble of a preference run, built with the run's own settings."""
    cfg = build(rundir.read_run(pref_dir)["config"])
    ensemble = make_ensemble(cfg, env)
    ensemble.load_state_dict(torch.load(pref_dir / "checkpoint" / "reward.pt", weights_only=False)["ensemble"])
    return ensemble


def learned_reward(pref_dir: Path, env):
    """The final reward model of a preference run, as ``(obs, act) -> reward``."""
    return final_ensemble(pref_dir, env).predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="a folder of pair run folders (ENV-sSEED-pref, ENV-sSEED-true)")
    parser.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for pref in sorted(args.runs.glob("*-pref")):
        true = pref.with_name(pref.name[:-len("pref")] + "true")
        match = re.fullmatch(r"(.+)-s(\d+)-pref", pref.name)
        if not (true / "policy.zip").exists() or match is None:
            continue
        env_id = json.loads((pref / "summary.json").read_text())["env"]
        env = make_env(env_id, record_states=False)
        reward = learned_reward(pref, env)
        row = {"env": env_id, "seed": int(match[2])}
        for who, folder in (("pref", pref), ("true", true)):
            policy = PPO.load(folder / "policy.zip", device="cpu")
            episodes = play_episodes(policy, env, args.episodes, seed=1000, score=reward)
            row[who] = {k: float(np.mean([e[k] for e in episodes])) for k in ("true_return", "learned_return", "length")}
            steps = np.array([s for e in episodes for s in e["steps"]])
            row[who]["step_correlation"] = float(np.corrcoef(steps[:, 0], steps[:, 1])[0, 1])
            # how far a step sits above the episode being over (0 for both rewards), in the
            # reward's own step-to-step spread: what ending an episode costs, as each reward sees it
            row[who]["true_above_end"], row[who]["learned_above_end"] = steps.mean(0) / steps.std(0)
        rows.append(row)
        print(json.dumps(row))
    if rows:
        print("\n| env | seed | policy | true return | learned return | steps | per-step correlation "
              "| step above end, true / learned (std units) |\n|---|---|---|---|---|---|---|---|")
        for r in rows:
            for who in ("pref", "true"):
                e = r[who]
                print(f"| {r['env']} | {r['seed']} | {who} | {e['true_return']:,.1f} | {e['learned_return']:,.1f} "
                      f"| {e['length']:,.0f} | {e['step_correlation']:.2f} "
                      f"| {e['true_above_end']:.2f} / {e['learned_above_end']:.2f} |")
    else:
        sys.exit(f"cross_score.py: no pairs of ENV-sSEED-pref / ENV-sSEED-true with policy.zip under {args.runs}")


if __name__ == "__main__":
    main()
