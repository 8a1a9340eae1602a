#!/usr/bin/env python
"""Does the labeling window keep up with a fast labeler? Time its switches between pairs.

A labeling session (SDL's dummy driver, the real window code and its prefetch thread)
shows MuJoCo Hopper clips of each given length, rendered from their recorded states. A
scripted labeler answers a fixed time (each ``--think`` value) after each pair's first
frame. For each setting the report gives the time from a key press to the next pair's
first frame (the switch latency; the window's goal is at most 0.2 s). The window renders
one pair ahead of the one on screen; a switch is slow when the labeler answers before
that pair is rendered.

    python benchmarks/ui_latency.py --clip-steps 60 125 --think 1.0 3.0 --pairs 12 --out benchmarks/results/ui-latency
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import write_results  # noqa: E402

from prefrl.clips import Clip  # noqa: E402
from prefrl.environment import make_env  # noqa: E402
from prefrl.store import PreferenceStore  # noqa: E402

ENV = "Hopper-v5"
SWITCH_GOAL_S = 0.2


def hopper_clips(n: int, steps: int, seed: int) -> list[Clip]:
    """``n`` clips of random-action Hopper experience, with the states the window replays."""
    env, rng, clips = make_env(ENV), np.random.default_rng(seed), []
    obs, info = env.reset(seed=seed)
    for _ in range(n):
        rows = []
        for _ in range(steps):
            act = env.action_space.sample()
            rows.append((obs, act, info["sim_state"]))
            obs, _, term, trunc, info = env.step(act)
            if term or trunc:
                obs, info = env.reset()
        o, a, s = (np.asarray(x) for x in zip(*rows))
        clips.append(Clip(o.astype(np.float32), a.astype(np.float32), rng.normal(size=steps).astype(np.float32),
                          steps, states=s, env_id=ENV))
    env.close()
    return clips


def measure(steps: int, pairs: int, think: float, seed: int) -> dict:
    import pygame

    from prefrl.ui.labeler import LabelingSession

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        meta = {"env_id": ENV, "label_budget": str(pairs), "trainer_status": "training",
                "trainer_heartbeat": str(time.time())}
        clips = hopper_clips(2 * pairs, steps, seed)
        with PreferenceStore(run_dir / "prefs.sqlite", create=True, meta=meta) as store:
            store.add_queries(list(zip(clips[0::2], clips[1::2])))
        session = LabelingSession(str(run_dir), labeler="bench", max_answers=pairs)
        started = time.monotonic()
        try:
            while session.step():
                current = session.current
                if current is None or session.window.shown_at is None:
                    continue
                if time.monotonic() - session.window.shown_at >= think:
                    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_LEFT, mod=0,
                                                         unicode="", scancode=0))
                    while session.current is current and session.step():
                        pass
            latencies = list(session.switch_latencies)
        finally:
            session.close()
    return {"clip_steps": steps, "frames_per_pair": 2 * steps, "pairs": pairs, "think_s": think,
            "switches": len(latencies), "median_switch_s": round(float(np.median(latencies)), 3),
            "max_switch_s": round(float(np.max(latencies)), 3),
            "switches_over_goal": int(sum(x > SWITCH_GOAL_S for x in latencies)),
            "seconds": round(time.monotonic() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip-steps", nargs="+", type=int, default=[60, 125])
    parser.add_argument("--think", nargs="+", type=float, default=[1.0, 3.0],
                        help="seconds the labeler looks at each pair before answering")
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = [measure(steps, args.pairs, think, args.seed) for think in args.think for steps in args.clip_steps]
    notes = (f"{ENV} clips rendered from states in the window's prefetch thread (SDL dummy driver, "
             f"MUJOCO_GL={os.environ['MUJOCO_GL']}, 320×240 per clip); the labeler answers a fixed time (think) "
             "after each pair's first frame",)
    print(write_results(args.out, "Labeling window: switch latency with a fast labeler", rows, {
        "think s": "think_s", "clip steps": "clip_steps", "frames per pair": "frames_per_pair",
        "switches": "switches", "median switch s": "median_switch_s", "max switch s": "max_switch_s",
        f"over {SWITCH_GOAL_S} s": "switches_over_goal", "seconds": "seconds"}, notes))

if __name__ == "__main__":
    main()
