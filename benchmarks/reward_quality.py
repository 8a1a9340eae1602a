#!/usr/bin/env python
"""How good is the reward an agent learns from, as the answers come in? Replay and compare.

Replays a finished preference run's answers in the order they came, refitting where its
schedule did (``refit_floor.replay``, with the run's own settings). After each refit the
reward is normalized as the run does it, on the newest answers' clips (a stand-in for the
run's recent experience), and compared step by step with the environment's own reward on
every labeled step of the run: the Pearson correlation of the two. A reward that
correlates poorly early is one the agent's first few hundred thousand steps are spent on.

    python benchmarks/reward_quality.py RUN_DIR [RUN_DIR ...] --out benchmarks/results/label-horizon/quality
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import write_results  # noqa: E402
from refit_floor import replay, run_answers  # noqa: E402

RECENT = 60  # answers whose clips stand in for the run's recent experience


def labeled_steps(clips) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The real (unpadded) steps of clips: ``(obs, acts, true rewards)``."""
    return (np.concatenate([c.obs[:c.length] for c in clips]).astype(np.float32),
            np.concatenate([c.acts[:c.length] for c in clips]).astype(np.float32),
            np.concatenate([c.rewards[:c.length] for c in clips]))


def quality(run_dir: Path) -> list[dict]:
    cfg, lefts, rights, _ = run_answers(run_dir)
    obs, acts, true = labeled_steps(lefts + rights)
    rows = []

    def on_fit(n: int, ensemble) -> None:
        recent = max(0, n - RECENT)
        ensemble.normalize(*labeled_steps(lefts[recent:n] + rights[recent:n])[:2])
        rows.append({"run": str(run_dir), "env": cfg.env, "seed": cfg.seed, "answers": n,
                     "correlation": round(float(np.corrcoef(ensemble.predict(obs, acts), true)[0, 1]), 3)})

    replay(run_dir, cfg.reward_min_steps, on_fit)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished preference run folders (prefs.sqlite, run.json)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [row for run in args.runs for row in quality(run)]
    print(write_results(args.out, f"Learned vs. true reward per step, replayed on {len(args.runs)} finished runs",
                        rows, {"run": "run", "env": "env", "seed": "seed", "answers": "answers",
                               "correlation with the true reward": "correlation"}))


if __name__ == "__main__":
    main()
