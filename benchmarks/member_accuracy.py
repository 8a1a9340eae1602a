#!/usr/bin/env python
"""Does each member of a finished run's reward ensemble still fit the run's own labels?

Scores every answered pair of ``RUN_DIR/prefs.sqlite`` with each member of the run's final
reward (``checkpoint/reward.pt``) and prints, per member, the share it orders as the label
does: over all decided pairs, over pairs with a clip that ended (padded), over the rest,
over the first 175 and the last 200 answers. A member far below the others, or below 0.5
on its own training labels, is stuck rather than short of data.

    python benchmarks/member_accuracy.py RUN_DIR [RUN_DIR ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cross_score import final_ensemble  # noqa: E402
from refit_floor import run_answers  # noqa: E402

from prefrl.environment import make_env  # noqa: E402
from prefrl.feedback import stack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished preference run folders")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for run in args.runs:
        cfg, lefts, rights, mu = run_answers(run)
        ensemble = final_ensemble(run, make_env(cfg.env, record_states=False))
        (obs_l, acts_l, len_l), (obs_r, acts_r, len_r) = stack(lefts), stack(rights)
        diff = ensemble.clip_returns(obs_l, acts_l, len_l) - ensemble.clip_returns(obs_r, acts_r, len_r)  # [M, N]
        decided = mu != 0.5
        ended = (len_l < obs_l.shape[1]) | (len_r < obs_r.shape[1])
        first, last = decided.copy(), decided.copy()
        first[175:], last[:-200] = False, False
        for m, d in enumerate(diff):
            right = (d > 0) == (mu > 0.5)
            print(f"{run.name} member {m}: all {right[decided].mean():.3f}, "
                  f"ended pairs {right[decided & ended].mean():.3f} (n={int((decided & ended).sum())}), "
                  f"other {right[decided & ~ended].mean():.3f}, first 175 {right[first].mean():.3f}, "
                  f"last 200 {right[last].mean():.3f}")


if __name__ == "__main__":
    main()
