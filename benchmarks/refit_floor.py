#!/usr/bin/env python
"""How many gradient steps does a reward refit need? Replay a finished run's answers and see.

A refit starts from the last one's weights, so it only has to take in the answers that
arrived since. This replays the answers of finished preference runs in the order they
came, refitting at the points the run's label schedule did (every ``refit_every`` agent
steps), once per step floor (``--reward-min-steps``) and number of passes over the labels
(``--epochs``), and reports for each:

- the CPU seconds of all refits together;
- the accuracy on the next answers *before* they are fitted (non-tie answers only): how
  well the reward predicts preferences about experience it has not been fitted on, which
  is what the agent's next rollouts meet.

Settings run one after another in one process, so they meet the same load.

    python benchmarks/refit_floor.py RUN_DIR [RUN_DIR ...] --floors 100 25 --out benchmarks/results/refit-floor
    python benchmarks/refit_floor.py RUN_DIR [RUN_DIR ...] --floors 25 --epochs 8 4 2 --out OUT
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import write_results  # noqa: E402

from prefrl import rundir  # noqa: E402
from prefrl.config import FeedbackConfig, build  # noqa: E402
from prefrl.feedback import stack  # noqa: E402
from prefrl.loop import FIRST_FIT_EPOCHS  # noqa: E402
from prefrl.reward import RewardEnsemble  # noqa: E402
from prefrl.schedule import labels_due  # noqa: E402
from prefrl.store import PreferenceStore  # noqa: E402
from prefrl.trainer import RewardTrainer  # noqa: E402


def run_answers(run_dir: Path):
    """A finished run's settings and its answered pairs in the order they came: ``(cfg, lefts, rights, mu)``."""
    cfg = build(rundir.read_run(run_dir)["config"])
    with PreferenceStore(run_dir / "prefs.sqlite") as store:
        lefts, rights, mu = store.preferences()
    return cfg, lefts, rights, mu


def fresh_ensemble(cfg, obs_l: np.ndarray, acts_l: np.ndarray, obs_r: np.ndarray, acts_r: np.ndarray,
                   first: int) -> RewardEnsemble:
    """A new ensemble seeded as the run's was, with input statistics from the clips of the
    first ``first`` answers (the run took them from its buffer, which held that experience)."""
    torch.manual_seed(cfg.seed)
    ensemble = RewardEnsemble(obs_l.shape[-1], acts_l.shape[-1], cfg.ensemble_size, cfg.reward_hidden)
    steps = np.concatenate([obs_l[:first], obs_r[:first]]).reshape(-1, obs_l.shape[-1])
    acts = np.concatenate([acts_l[:first], acts_r[:first]]).reshape(-1, acts_l.shape[-1])
    ensemble.set_input_stats(steps, acts)
    return ensemble


def replay(run_dir: Path, floor: int, on_fit: Callable[[int, RewardEnsemble], None] | None = None,
           epochs: int | None = None) -> dict:
    """Refit a fresh ensemble on ``run_dir``'s answers as they arrived, with step floor ``floor``
    and ``epochs`` passes per refit (default: the run's own).

    ``on_fit(n, ensemble)`` is called after each refit, fitted on the first ``n`` answers."""
    cfg, lefts, rights, mu = run_answers(run_dir)  # the run's own settings
    epochs = epochs or cfg.reward_epochs
    (obs_l, acts_l, len_l), (obs_r, acts_r, len_r) = stack(lefts), stack(rights)
    first = labels_due(0, cfg.labels, cfg.timesteps, cfg.initial_label_fraction, cfg.label_horizon)
    ensemble = fresh_ensemble(cfg, obs_l, acts_l, obs_r, acts_r, first)
    trainer = RewardTrainer(ensemble, lr=cfg.reward_lr, batch_size=cfg.reward_batch_size,
                            epochs=epochs, min_steps=floor, seed=cfg.seed)
    points = sorted({min(len(mu), labels_due(t, cfg.labels, cfg.timesteps, cfg.initial_label_fraction,
                                             cfg.label_horizon))
                     for t in range(0, cfg.timesteps + 1, cfg.refit_every)} | {len(mu)})
    cpu, right, decided, fitted, metrics = 0.0, 0, 0, 0, None
    for n in points:
        if n <= fitted:
            continue
        if fitted:  # accuracy on the answers about to arrive, before fitting them
            new = slice(fitted, n)
            diff = (ensemble.clip_returns(obs_l[new], acts_l[new], len_l[new]).mean(0)
                    - ensemble.clip_returns(obs_r[new], acts_r[new], len_r[new]).mean(0))
            keep = mu[new] != 0.5
            right += int(((diff > 0) == (mu[new] > 0.5))[keep].sum())
            decided += int(keep.sum())
        start = time.process_time()
        metrics = trainer.fit(obs_l[:n], acts_l[:n], obs_r[:n], acts_r[:n], mu[:n],
                              epochs=epochs * FIRST_FIT_EPOCHS if not fitted else None,
                              lengths_left=len_l[:n], lengths_right=len_r[:n])
        cpu += time.process_time() - start
        fitted = n
        if on_fit is not None:
            on_fit(n, ensemble)
    return {"run": str(run_dir), "env": cfg.env, "seed": cfg.seed, "answers": len(mu), "floor": floor, "epochs": epochs,
            "refits": len(points), "cpu_seconds": round(cpu, 1),
            "next_answer_accuracy": round(right / decided, 4) if decided else None,
            "final_val_accuracy": round(metrics.val_accuracy, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished preference run folders (prefs.sqlite, run.json)")
    parser.add_argument("--floors", nargs="+", type=int, default=[100, FeedbackConfig.reward_min_steps])
    parser.add_argument("--epochs", nargs="+", type=int, default=[FeedbackConfig.reward_epochs],
                        help="passes over the labels per refit (the first fit runs %dx as many)" % FIRST_FIT_EPOCHS)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [replay(run, floor, epochs=epochs) for run in args.runs for floor in args.floors for epochs in args.epochs]
    print(write_results(args.out, f"Reward refit step floor and epochs, replayed on {len(args.runs)} finished runs", rows, {
        "run": "run", "env": "env", "seed": "seed", "answers": "answers", "refits": "refits", "floor": "floor",
        "epochs": "epochs", "refit CPU s": "cpu_seconds", "next-answer accuracy": "next_answer_accuracy",
        "final val accuracy": "final_val_accuracy"}))

if __name__ == "__main__":
    main()
