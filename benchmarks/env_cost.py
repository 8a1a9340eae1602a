#!/usr/bin/env python
"""Does the preference agent's behaviour make its environment dearer to step? Time it.

The side-by-side overhead of ``vs_true_reward.py`` counts everything one process spends
more than the other, including a simulator that costs more per step for one gait than for
another (contacts, resets). For each run folder, its final policy acts (stochastically, as
in training) for ``--steps`` steps in one environment, and only ``env.step``/``env.reset``
are timed, in CPU seconds per step.

    python benchmarks/env_cost.py OUT/runs/HalfCheetah-v5-s2-pref OUT/runs/HalfCheetah-v5-s2-true --out /tmp/env-cost
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import write_results  # noqa: E402

from prefrl.environment import make_env  # noqa: E402


def step_cost(run: Path, steps: int) -> dict:
    from stable_baselines3 import PPO

    env_id = json.loads((run / "summary.json").read_text())["env"]
    env = make_env(env_id, record_states=False)
    policy = PPO.load(run / "policy.zip", device="cpu")
    obs, _ = env.reset(seed=0)
    cpu, episodes = 0.0, 0
    for _ in range(steps):
        action, _ = policy.predict(obs, deterministic=False)
        start = time.process_time()
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
            episodes += 1
        cpu += time.process_time() - start
    env.close()
    return {"run": run.name, "env": env_id, "steps": steps, "episodes_ended": episodes,
            "us_per_step": round(cpu / steps * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders (policy.zip, summary.json)")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [step_cost(run, args.steps) for run in args.runs]
    print(write_results(args.out, "Environment CPU per step under each run's final policy", rows, {
        "run": "run", "env": "env", "steps": "steps", "episodes ended": "episodes_ended",
        "µs per env step": "us_per_step"}))


if __name__ == "__main__":
    main()
