"""How many synthetic answers, and how much wall time, until a Hopper backflips.

Trains on ``prefrl/HopperBackflip-v0`` with the scripted backflip judge as the labeler
(Christiano et al. 2017, §3.2 taught this with ~900 human answers) and, after every
checkpoint, runs deterministic evaluation episodes. Success is the test in
``prefrl.envs.backflip`` (a full backward turn, then upright for 10 steps). Writes
``OUT/results.md``, ``OUT/results.json`` and the per-checkpoint ``OUT/evals.csv``.

    python benchmarks/backflip.py --labels 900 --timesteps 2000000
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import machine  # noqa: E402

from prefrl.config import TrainConfig  # noqa: E402
from prefrl.envs.backflip import evaluate_backflips  # noqa: E402
from prefrl.loop import train  # noqa: E402

ENV = "prefrl/HopperBackflip-v0"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=900)
    parser.add_argument("--timesteps", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=3)
    parser.add_argument("--refit-every", type=int, default=32_768)
    parser.add_argument("--clip-steps", type=int, default=0,
                        help="steps per clip; 0 = the env's own (125 for the backflip Hopper, 1 s)")
    parser.add_argument("--keep-going", action="store_true", help="train on after the first success")
    parser.add_argument("--true-reward", action="store_true",
                        help="PPO on the env's backflip reward instead of the judge: can PPO land a flip at all?")
    parser.add_argument("--out", default="benchmarks/results/backflip")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(env=ENV, run_dir=str(out / "runs" / f"s{args.seed}"), oracle="backflip", labels=args.labels,
                      true_reward=args.true_reward, clip_steps=args.clip_steps,
                      timesteps=args.timesteps, seed=args.seed, refit_every=args.refit_every,
                      eval_episodes=args.eval_episodes)
    rows, first = [], None
    started, host = time.time(), machine()  # the commit as training starts, not as it ends

    def on_checkpoint(run) -> bool:
        nonlocal first
        result = evaluate_backflips(run.agent, episodes=args.eval_episodes, seed=args.seed, env_id=ENV)
        row = {"timesteps": run.timesteps, "answers": 0 if args.true_reward else run.store.num_answers(),
               "train_wall_seconds": round(run.wall_seconds(), 1), "full_backflips": result["full_backflips"],
               "backflips": result["backflips"], "max_rotation": round(result["max_rotation"], 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(out / "evals.csv", "a", encoding="utf-8") as f:
            f.write((",".join(row) + "\n" if len(rows) == 1 else "") + ",".join(map(str, row.values())) + "\n")
        if result["full_backflips"] and first is None:
            first = row
        return first is not None and not args.keep_going

    (out / "evals.csv").unlink(missing_ok=True)
    summary = train(cfg, progress=False, on_checkpoint=on_checkpoint)
    results = {"command": " ".join([sys.executable, *sys.argv]), "date": datetime.now(timezone.utc).isoformat(),
               "machine": host, "settings": vars(args), "first_success": first, "evals": rows,
               "summary": summary, "total_wall_seconds": time.time() - started}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    teacher = "PPO on the env's backflip reward, no answers" if args.true_reward else "judge: `backflip`"
    lines = [f"# Backflip from synthetic answers ({ENV}, {teacher})", "",
             f"Command: `{results['command']}`  ", f"Date: {results['date']}  ",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in results["machine"].items()), "",
             "Success test (`prefrl.envs.backflip.is_full_backflip`): within a deterministic evaluation "
             "episode, the hopper, from standing upright, turns a full backward circle (2π − 0.35 rad) and "
             "is upright again (within 0.35 rad of vertical, torso above 0.7) for 10 consecutive steps, "
             "the first of them at most 1.5 s after it last stood.", ""]
    if first:
        lines += [f"**First success** after {first['answers']} answers, {first['timesteps']} agent steps, "
                  f"{first['train_wall_seconds']} s of training wall time.", ""]
    else:
        lines += [f"**No full backflip** within {args.timesteps} agent steps and {args.labels} answers.", ""]
    lines += ["| agent steps | answers | wall s | episodes with a full flip | flips | max rotation (rad) |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['timesteps']} | {r['answers']} | {r['train_wall_seconds']} | {r['full_backflips']}/"
              f"{args.eval_episodes} | {r['backflips']} | {r['max_rotation']} |" for r in rows]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
