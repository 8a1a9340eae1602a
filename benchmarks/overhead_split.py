#!/usr/bin/env python
"""Does the preference loop slow the PPO around it? Runs whose agents act identically, timed by part.

The side-by-side overhead of ``vs_true_reward.py`` is the loop's own CPU (``loop_cpu_seconds``)
plus whatever else the preference process spends more: its agent behaves differently (a gait
can cost the simulator more per step, ``env_cost.py``), and the loop's work may slow the PPO
code around it (caches, memory). This script takes behaviour out. In every arm the agent
learns from the environment's reward, so two arms with the same seed act identically step
for step (the final returns must match to the digit, which the report checks), and any
difference in PPO's and the simulator's CPU comes from what the arm adds:

- ``plain``: true-reward PPO, as ``prefrl train --true-reward``;
- ``buffer``: the same, through the loop's vectorized-env wrapper and trajectory buffer;
- ``idle``: the preference run's set-up (initial-policy experience, buffer, per-step
  learned reward), with no queries and no reward fits;
- ``loop``: the same with queries, oracle answers and reward fits, as in a preference run.

The arms run two at a time (``plain`` beside ``buffer``, ``idle`` beside ``loop``), like the
pairs of ``vs_true_reward.py``.

    python benchmarks/overhead_split.py --env Hopper-v5 --timesteps 300000 --out /tmp/split
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import write_results  # noqa: E402

ARMS = ("plain", "buffer", "idle", "loop")
PAIRS = (("plain", "buffer"), ("idle", "loop"))
TIMED = {"ppo_train": ("stable_baselines3", "PPO", "train"),
         "env_step": ("stable_baselines3.common.vec_env", "DummyVecEnv", "step_wait")}


def run_arm(arm: str, env: str, timesteps: int, labels: int, seed: int, run_dir: str) -> dict:
    """One arm in this process; returns its CPU by part."""
    import importlib

    import prefrl.loop as loop
    from prefrl.config import TrainConfig
    from prefrl.vec_env import LearnedRewardVecEnv

    cpu: dict[str, float] = dict.fromkeys(TIMED, 0.0)

    def timed(key: str, f):
        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return f(*args, **kwargs)
            finally:
                cpu[key] += time.process_time() - start
        return wrapper

    for key, (module, cls, name) in TIMED.items():
        owner = getattr(importlib.import_module(module), cls)
        setattr(owner, name, timed(key, getattr(owner, name)))

    class TrueRewardThrough(LearnedRewardVecEnv):
        """The loop's wrapper and buffer, handing the agent the environment's reward."""

        def step_wait(self):
            obs, _, dones, infos = super().step_wait()
            return obs, np.array([info["true_reward"] for info in infos], np.float32), dones, infos

    make_venv, wrappers = loop.Run._make_venv, []

    def with_buffer(run):
        wrappers.append(TrueRewardThrough(make_venv(run), lambda obs, acts: np.zeros(len(obs), np.float32), run.buffer))
        return wrappers[-1]

    if arm == "buffer":
        loop.Run._make_venv = with_buffer
    if arm in ("idle", "loop"):
        loop.defer_to_rollouts = lambda agent, venv: None  # rewards on every step, as the arm's agent needs them
        loop.Run._make_venv = lambda run: TrueRewardThrough(make_venv(run).venv, run.ensemble.predict, run.buffer)
    if arm == "idle":
        loop.Run.ask_and_answer = lambda run, due: None
        loop.Run.fit_reward = lambda run: None
    cfg = TrainConfig(env=env, timesteps=timesteps, labels=labels, oracle="perfect", seed=seed,
                      true_reward=arm in ("plain", "buffer"), run_dir=run_dir, eval_episodes=1)
    summary = loop.train(cfg, progress=False)
    parts = summary.get("loop_cpu_seconds") or {"reward_steps": sum(w.cpu_seconds for w in wrappers)}
    result = summary["true_return_mean"]
    return {"arm": arm, "return": result, "return_text": f"{result:,.1f}", "cpu": summary["cpu_seconds"], **cpu,
            **{f"loop_{k}": v for k, v in parts.items()}, "loop_parts": sum(parts.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--timesteps", type=int, default=300_000)
    parser.add_argument("--labels", type=int, default=700)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # a child process runs one arm
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(run_arm(args.arm, args.env, args.timesteps, args.labels, args.seed, args.run_dir)))
        return
    rows = {}
    child_env = {**os.environ, "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        for pair in PAIRS:
            procs = {arm: subprocess.Popen(
                [sys.executable, __file__, "--arm", arm, "--env", args.env, "--timesteps", str(args.timesteps),
                 "--labels", str(args.labels), "--seed", str(args.seed), "--out", str(args.out),
                 "--run-dir", f"{tmp}/{arm}"], stdout=subprocess.PIPE, text=True, env=child_env) for arm in pair}
            for arm, proc in procs.items():
                out, _ = proc.communicate()
                if proc.returncode:
                    sys.exit(f"overhead_split.py: arm {arm} failed (exit {proc.returncode})")
                rows[arm] = json.loads(out.strip().splitlines()[-1])
    plain = rows["plain"]["cpu"]
    for row in rows.values():
        row["rest"] = row["cpu"] - row["loop_parts"]  # CPU outside the loop's own timed parts
        for key in ("cpu", "ppo_train", "env_step", "loop_parts", "rest"):
            row[f"{key}_share"] = f"{100 * row[key] / plain:.1f}%"
    same = [f"{a} and {b}: returns {'equal' if rows[a]['return'] == rows[b]['return'] else 'DIFFER'} "
            f"({rows[a]['return']:.1f}, {rows[b]['return']:.1f})" for a, b in PAIRS]
    added = [f"{b} over {a}, outside the loop's timed parts: {100 * (rows[b]['rest'] - rows[a]['rest']) / plain:+.1f}% "
             f"of plain's CPU (PPO training {100 * (rows[b]['ppo_train'] - rows[a]['ppo_train']) / plain:+.1f}%, "
             f"environment steps {100 * (rows[b]['env_step'] - rows[a]['env_step']) / plain:+.1f}%)" for a, b in PAIRS]
    print(write_results(args.out, f"{args.env}: CPU by part, agents on the true reward in every arm",
                        list(rows.values()), {
                            "arm": "arm", "final return": "return_text", "CPU (% of plain)": "cpu_share",
                            "PPO training": "ppo_train_share", "environment steps": "env_step_share",
                            "loop's timed parts": "loop_parts_share", "rest": "rest_share"},
                        notes=(f"{args.timesteps:,} steps, {args.labels} labels (perfect oracle), seed {args.seed}",
                               *same, *added)))


if __name__ == "__main__":
    main()
