#!/usr/bin/env python
"""Preference learning vs. true-reward PPO, side by side, on MuJoCo tasks.

For every (env, seed) the script starts a *pair* of ``prefrl train`` processes at the
same time, with identical PPO settings: one learns from ``--labels`` preference answers
(``--oracle``), the other trains on the environment's own reward (``--true-reward``).
Both see the same machine load, so the wall-time overhead of preference learning
(reward-model fits, query selection) is measured fairly. Pairs run one after another
(``--parallel 2``); with ``--parallel 2k`` up to k pairs run at once, a pair's two
runs are always started together.

Outputs, under ``--out``:

    runs/<env>-s<seed>-{pref,true}/   one ``prefrl train`` run dir each (+ stderr.log,
                                      stdout.log, bench.json)
    invocation.json                   how the benchmark was started (used by --report-only)
    results.json                      every run's summary.json, and the per-env figures
    results.md                        header (command, date, machine, budget) + tables
    curves.png                        learning curves from each run's progress.csv

A run whose summary.json exists is skipped; one with a run.json but no summary is
continued with ``--resume``: rerun the same command to finish an interrupted benchmark.
``--report-only`` rebuilds results.* and curves.png from the run dirs, starting nothing.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import machine  # noqa: E402

DEFAULTS = {
    "envs": ["HalfCheetah-v5", "Hopper-v5"],
    "seeds": [0, 1],
    "timesteps": 1_000_000,
    "labels": 700,
    "oracle": "perfect",
    "extra": "",
}
TARGET_RATIO = 0.9      # preference return / true-reward return, at least
TARGET_OVERHEAD = 0.15  # preference wall time / true-reward wall time - 1, at most
MODES = ("pref", "true")
END_ROWS = 3  # progress rows that make a run's end-of-training return (≈ the last 100k steps by default)
CHILD_ENV = {"MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1"}


# --------------------------------------------------------------------------- arguments

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/vs_true_reward.py",
        description="Compare preference learning with true-reward PPO: each (env, seed) pair of "
                    "`prefrl train` runs is started at the same time, so both see the same load.",
        epilog="Example: python benchmarks/vs_true_reward.py --envs HalfCheetah-v5 --seeds 0 --timesteps 200000 "
               "--extra='--eval-episodes 5'")
    # defaults are None so --report-only can take unset values from OUT/invocation.json
    p.add_argument("--envs", nargs="+", metavar="ID", help=f"gymnasium ids (default: {' '.join(DEFAULTS['envs'])})")
    p.add_argument("--seeds", nargs="+", type=int, metavar="S", help="seeds (default: 0 1)")
    p.add_argument("--timesteps", type=int, metavar="T", help="PPO steps per run (default: 1000000)")
    p.add_argument("--labels", type=int, metavar="N", help="label budget of each preference run (default: 700)")
    p.add_argument("--oracle", metavar="NAME", help="who answers the preference queries (default: perfect)")
    p.add_argument("--out", default="benchmarks/results/mujoco", metavar="DIR",
                   help="output folder (default: benchmarks/results/mujoco)")
    p.add_argument("--parallel", type=int, default=2, metavar="P",
                   help="processes at once; pairs are kept together, so 2 = one pair at a time (default: 2)")
    p.add_argument("--extra", metavar="FLAGS",
                   help="extra flags for every `prefrl train`, one string, e.g. --extra='--eval-episodes 10'")
    p.add_argument("--report-only", action="store_true",
                   help="start no runs: rebuild results.json, results.md and curves.png from OUT/runs")
    return p


def resolve(args: argparse.Namespace, out: Path) -> dict:
    """The benchmark settings: flags, else (with --report-only) OUT/invocation.json, else defaults."""
    saved = {}
    if args.report_only and (out / "invocation.json").exists():
        saved = json.loads((out / "invocation.json").read_text())
    settings = {}
    for key, default in DEFAULTS.items():
        value = getattr(args, key)
        settings[key] = value if value is not None else saved.get(key, default)
    settings["parallel"] = args.parallel if not args.report_only else saved.get("parallel", args.parallel)
    settings["command"] = saved.get("command") if args.report_only and saved else command_line()
    settings["started"] = saved.get("started") if args.report_only and saved else now()
    if not args.report_only:
        settings["machine"] = machine()  # at the start: the commit the runs are made with
    elif saved.get("machine"):
        settings["machine"] = saved["machine"]
    return settings


def command_line() -> str:
    return shlex.join(["python", *sys.argv])


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def safe(name: str) -> str:
    """An env id as a folder name: prefrl/PointGoal-v0 -> prefrl_PointGoal-v0."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def run_dir(out: Path, env: str, seed: int, mode: str) -> Path:
    return out / "runs" / f"{safe(env)}-s{seed}-{mode}"


# --------------------------------------------------------------------------- running

def train_command(settings: dict, env: str, seed: int, mode: str, directory: Path, resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "prefrl", "train", "--env", env, "--run-dir", str(directory),
           "--timesteps", str(settings["timesteps"]), "--seed", str(seed), "--no-progress"]
    if mode == "true":
        cmd.append("--true-reward")
    else:
        cmd += ["--oracle", settings["oracle"], "--labels", str(settings["labels"])]
    if resume:
        cmd.append("--resume")
    return cmd + shlex.split(settings["extra"] or "")


def check_reusable(directory: Path, settings: dict, env: str, seed: int, mode: str) -> None:
    """Refuse to reuse a run made with other settings (another budget in the same --out)."""
    try:
        config = json.loads((directory / "run.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return  # not a finished prefrl run: `prefrl train` itself will say what is wrong
    want = {"env": env, "seed": seed, "timesteps": settings["timesteps"], "true_reward": mode == "true"}
    if mode == "pref":
        want.update(labels=settings["labels"], oracle=settings["oracle"])
    wrong = {k: (config.get(k), v) for k, v in want.items() if config.get(k) != v}
    if wrong:
        diff = ", ".join(f"{k}={had!r} (asked {v!r})" for k, (had, v) in wrong.items())
        sys.exit(f"mujoco.py: {directory} holds a run made with {diff}: choose another --out")


class Child:
    def __init__(self, name: str, directory: Path, cmd: list[str], pair: tuple[str, int]):
        self.name, self.dir, self.cmd, self.pair = name, directory, cmd, pair
        directory.mkdir(parents=True, exist_ok=True)
        self.started = now()
        self.t0 = time.time()
        self.err = open(directory / "stderr.log", "a", encoding="utf-8")
        self.out = open(directory / "stdout.log", "a", encoding="utf-8")
        for f in (self.err, self.out):
            f.write(f"# {self.started} {shlex.join(cmd)}\n")
            f.flush()
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **CHILD_ENV})
        self.partners: set[str] = set()  # runs that were going while this one ran

    def finish(self) -> int:
        self.err.close()
        self.out.close()
        rc = self.proc.returncode
        bench = {"command": shlex.join(self.cmd), "started": self.started, "ended": now(),
                 "seconds": round(time.time() - self.t0, 1), "returncode": rc,
                 "concurrent_with": sorted(self.partners), "env_vars": CHILD_ENV}
        history = []
        if (self.dir / "bench.json").exists():
            try:
                history = json.loads((self.dir / "bench.json").read_text()).get("sessions", [])
            except (OSError, ValueError):
                pass
        (self.dir / "bench.json").write_text(json.dumps({"sessions": history + [bench]}, indent=2))
        return rc


def run_all(settings: dict, out: Path, parallel: int) -> list[str]:
    """Start the pairs, at most ``parallel`` processes at once. Returns the failed runs."""
    pending: list[list[tuple[str, Path, list[str], tuple[str, int]]]] = []
    for env in settings["envs"]:
        for seed in settings["seeds"]:
            group = []
            for mode in MODES:
                directory = run_dir(out, env, seed, mode)
                check_reusable(directory, settings, env, seed, mode)
                if (directory / "summary.json").exists():
                    print(f"skip   {directory.name} (summary.json exists)", flush=True)
                    continue
                resume = (directory / "run.json").exists()
                group.append((directory.name, directory,
                              train_command(settings, env, seed, mode, directory, resume), (env, seed)))
            if group and parallel < 2:  # a pair cannot be kept together: one run at a time
                pending += [[run] for run in group]
            elif group:
                pending.append(group)
    if parallel < 2:
        print("note: --parallel 1 runs a pair's two runs one after the other: the wall-time overhead "
              "is then not measured under the same load", flush=True)
    failed: list[str] = []
    running: list[Child] = []
    try:
        while pending or running:
            while pending and len(running) + len(pending[0]) <= parallel:
                for name, directory, cmd, pair in pending.pop(0):
                    print(f"start  {name}{' (resume)' if '--resume' in cmd else ''}", flush=True)
                    running.append(Child(name, directory, cmd, pair))
            for child in running:
                child.partners.update(c.name for c in running if c is not child)
            time.sleep(1.0)
            for child in [c for c in running if c.proc.poll() is not None]:
                running.remove(child)
                rc = child.finish()
                if rc == 0:
                    print(f"done   {child.name} ({time.time() - child.t0:.0f} s)", flush=True)
                else:
                    failed.append(child.name)
                    tail = (child.dir / "stderr.log").read_text(errors="replace").strip().splitlines()[-5:]
                    print(f"FAILED {child.name} (exit {rc}); stderr.log ends:\n    " + "\n    ".join(tail),
                          flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the runs; rerun the same command to continue them", flush=True)
        for child in running:
            if child.proc.poll() is None:
                child.proc.terminate()  # prefrl checkpoints every refit; --resume picks it up
        for child in running:
            try:
                child.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
            child.finish()
        raise
    return failed


# --------------------------------------------------------------------------- report

def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_progress(path: Path) -> list[dict]:
    """Rows of a run folder's progress.csv (or of the CSV file ``path``), as floats."""
    try:
        with open(path / "progress.csv" if path.is_dir() else path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return []
    out = []
    for row in rows:
        try:
            out.append({k: float(v) for k, v in row.items()})
        except (TypeError, ValueError):
            continue
    return out


def training_end_return(rows: list[dict]) -> float:
    """Mean true return of the training episodes over the last END_ROWS progress rows: the
    end of training as the learning curves show it, steadier than one policy's final
    deterministic episodes."""
    values = [r["ep_true_return_mean"] for r in rows[-END_ROWS:] if finite(r.get("ep_true_return_mean"))]
    return sum(values) / len(values) if values else math.nan


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n-1; 0 for a single value)."""
    values = [v for v in values if finite(v)]
    if not values:
        return math.nan, math.nan
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def fmt(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}" if finite(x) else "–"


def pct(x: float) -> str:
    return f"{x * 100:+.1f}%" if finite(x) else "–"


def mark(ok: bool | None) -> str:
    return "–" if ok is None else ("✓" if ok else "✗")


def collect(settings: dict, out: Path) -> dict:
    """Every run's summary and per-env figures."""
    envs = {}
    for env in settings["envs"]:
        seeds = []
        for seed in settings["seeds"]:
            entry = {"seed": seed}
            for mode in MODES:
                d = run_dir(out, env, seed, mode)
                bench = read_json(d / "bench.json") or {}
                sessions = bench.get("sessions", [])
                entry[mode] = {"run_dir": str(d), "summary": read_json(d / "summary.json"),
                               "concurrent_with": sorted({n for s in sessions for n in s.get("concurrent_with", [])}),
                               "sessions": len(sessions)}
            p, t = entry["pref"]["summary"], entry["true"]["summary"]
            entry["ratio"] = (p["true_return_mean"] / t["true_return_mean"]
                              if p and t and finite(t["true_return_mean"]) and t["true_return_mean"] > 0 else math.nan)
            entry["training_end"] = {m: training_end_return(read_progress(run_dir(out, env, seed, m))) for m in MODES}
            entry["overhead"] = (p["wall_seconds"] / t["wall_seconds"] - 1
                                 if p and t and t.get("wall_seconds") else math.nan)
            # CPU time is the cost whatever the load; summaries before it was recorded lack it.
            entry["cpu_overhead"] = (p["cpu_seconds"] / t["cpu_seconds"] - 1
                                     if p and t and p.get("cpu_seconds") and t.get("cpu_seconds") else math.nan)
            # The loop's own CPU, timed inside the preference run: free of how the two agents behave.
            parts = (p or {}).get("loop_cpu_seconds")
            entry["loop_cpu_share"] = (sum(parts.values()) / t["cpu_seconds"]
                                       if parts and t and t.get("cpu_seconds") else math.nan)
            # measured side by side: each run of the pair ran in one session, alongside the other
            entry["side_by_side"] = (entry["pref"]["sessions"] == 1 and entry["true"]["sessions"] == 1
                                     and run_dir(out, env, seed, "true").name in entry["pref"]["concurrent_with"])
            seeds.append(entry)
        done = [e for e in seeds if e["pref"]["summary"] and e["true"]["summary"]]
        envs[env] = {"seeds": seeds, "complete_seeds": [e["seed"] for e in done],
                     **pool([seed_row(e) for e in done]),
                     "labels": [e["pref"]["summary"].get("labels") for e in done]}
    return envs


def by_quarter(out: Path, env: str, seed: int) -> list[tuple[float, float]] | None:
    """CPU overhead and loop CPU share in each quarter of a pair's training, from the
    ``cpu_seconds``/``loop_cpu_seconds`` columns of the two progress.csv files (runs from
    before they were recorded: None). Shows where along a run the overhead arises."""
    rows = {mode: {r["timesteps"]: r for r in read_progress(run_dir(out, env, seed, mode))} for mode in MODES}
    steps = sorted(set(rows["pref"]) & set(rows["true"]))
    if not steps or "cpu_seconds" not in rows["true"][steps[0]] or "loop_cpu_seconds" not in rows["pref"][steps[0]]:
        return None
    keys = ("cpu_seconds", "loop_cpu_seconds")
    start = {m: dict.fromkeys(keys, 0.0) for m in MODES}
    figures = []
    for q in (0.25, 0.5, 0.75, 1.0):
        end = {m: rows[m][steps[max(0, round(q * len(steps)) - 1)]] for m in MODES}
        d = {m: {k: end[m][k] - start[m][k] for k in keys} for m in MODES}
        figures.append((d["pref"]["cpu_seconds"] / d["true"]["cpu_seconds"] - 1,
                        d["pref"]["loop_cpu_seconds"] / d["true"]["cpu_seconds"]))
        start = end
    return figures


def eval_length(summary: dict | None) -> float:
    """Mean length of a run's final evaluation episodes: on a terminating env (Hopper), how long
    the final policy stays up, which return alone does not tell apart from how fast it moves."""
    lengths = (summary or {}).get("episode_lengths") or []
    return sum(lengths) / len(lengths) if lengths else math.nan


def seed_row(entry: dict) -> dict:
    """One finished seed's figures, as `pool` (and benchmarks/combine.py) read them."""
    return {"seed": entry["seed"], "true": entry["true"]["summary"]["true_return_mean"],
            "pref": entry["pref"]["summary"]["true_return_mean"], "labels": entry["pref"]["summary"].get("labels"),
            "ratio": entry["ratio"], "overhead": entry["overhead"],
            "cpu_overhead": entry.get("cpu_overhead", math.nan), "loop_cpu_share": entry.get("loop_cpu_share", math.nan),
            **{f"end_{m}": entry.get("training_end", {}).get(m, math.nan) for m in MODES},
            **{f"len_{m}": eval_length(entry[m]["summary"]) for m in MODES}}


BOOTSTRAP_DRAWS = 10_000


def bootstrap_interval(columns, statistic, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> tuple[float, float]:
    """5th and 95th percentiles of ``statistic`` over seeds drawn with replacement: ``columns``
    are per-seed arrays ``[n]``, and ``statistic`` maps the drawn ``[draws, n]`` arrays to ``[draws]``.
    NaN with fewer than two seeds."""
    import numpy as np

    columns = [np.asarray(c, dtype=float) for c in columns]
    n = len(columns[0])
    if n < 2:
        return math.nan, math.nan
    picks = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    low, high = np.percentile(statistic(*(c[picks] for c in columns)), [5, 95])
    return float(low), float(high)


def ratio_interval(rows: list[dict]) -> tuple[float, float]:
    """How far the pooled ratio (ratio of mean returns) could move with another set of seeds
    as spread as these (:func:`bootstrap_interval`)."""
    both = [(r["true"], r["pref"]) for r in rows if finite(r["true"]) and finite(r["pref"])]
    true, pref = zip(*both) if both else ((), ())
    return bootstrap_interval([true, pref], lambda t, p: p.mean(1) / t.mean(1))


def interval_note(interval: tuple[float, float]) -> str:
    """The report's sentence for :func:`ratio_interval`'s result; empty with fewer than two seeds."""
    low, high = interval
    return (f"Ratio over seeds drawn with replacement ({BOOTSTRAP_DRAWS:,} draws), 5th to 95th percentile: "
            f"{fmt(low, 3)} to {fmt(high, 3)}." if finite(low) else "")


def pool(rows: list[dict]) -> dict:
    """Figures over seeds: the ratio of the mean returns, the mean of the per-seed overheads."""
    true_m, true_s = mean_std([r["true"] for r in rows])
    pref_m, pref_s = mean_std([r["pref"] for r in rows])
    ratio = pref_m / true_m if finite(true_m) and true_m > 0 else math.nan
    overhead, overhead_s = mean_std([r["overhead"] for r in rows])
    cpu_overhead, _ = mean_std([r["cpu_overhead"] for r in rows])
    loop_cpu, _ = mean_std([r.get("loop_cpu_share", math.nan) for r in rows])
    both = [r for r in rows if all(finite(r.get(f"end_{m}", math.nan)) for m in MODES)]
    ends = {m: mean_std([r[f"end_{m}"] for r in both])[0] for m in MODES}
    return {"true_return_mean": true_m, "true_return_std": true_s,
            "pref_return_mean": pref_m, "pref_return_std": pref_s,
            "return_ratio": ratio, "return_ratio_interval": ratio_interval(rows), "overhead_mean": overhead, "overhead_std": overhead_s,
            "cpu_overhead_mean": cpu_overhead, "loop_cpu_share_mean": loop_cpu,
            "training_end_true": ends["true"], "training_end_pref": ends["pref"],
            "training_end_ratio": ends["pref"] / ends["true"] if finite(ends["true"]) and ends["true"] > 0 else math.nan,
            "seeds_at_target": sum(finite(r["ratio"]) and r["ratio"] >= TARGET_RATIO for r in rows),
            "ratio_ok": None if not finite(ratio) else ratio >= TARGET_RATIO,
            "overhead_ok": None if not finite(overhead) else overhead <= TARGET_OVERHEAD}


def jsonable(x, default=str):
    """Strict JSON: NaN/inf become null."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x if isinstance(x, (str, int, float, bool, type(None))) else default(x)


def plot(settings: dict, out: Path) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        print("note: matplotlib is not installed (pip install matplotlib): no curves.png", flush=True)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = settings["envs"]
    cols = min(len(envs), 3)
    rows = math.ceil(len(envs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for i, env in enumerate(envs):
        ax = axes[i // cols][i % cols]
        for j, seed in enumerate(settings["seeds"]):
            for mode, style, label in (("pref", "-", "preferences"), ("true", "--", "true reward")):
                rows_ = [r for r in read_progress(run_dir(out, env, seed, mode)) if finite(r["ep_true_return_mean"])]
                if rows_:
                    ax.plot([r["timesteps"] for r in rows_], [r["ep_true_return_mean"] for r in rows_],
                            linestyle=style, marker="o", markersize=3, color=colors[j % len(colors)],
                            label=f"seed {seed}, {label}")
        ax.set_title(env)
        ax.set_xlabel("timesteps")
        ax.set_ylabel("episode true return (training)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    for k in range(len(envs), rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    fig.suptitle(f"preferences ({settings['labels']} labels, {settings['oracle']} oracle) — solid; "
                 f"true-reward PPO — dashed", fontsize=10)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(settings: dict, out: Path, rebuilt: bool = False) -> None:
    envs = collect(settings, out)
    # A rebuilt report keeps the machine and commit the runs were measured on.
    info = (settings.get("machine") or ((read_json(out / "results.json") or {}).get("machine") if rebuilt else None)
            or machine())
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(jsonable(
        {"command": settings["command"], "started": settings["started"], "report_written": now(),
         "machine": info, "budget": {k: settings[k] for k in ("timesteps", "labels", "oracle", "seeds", "extra")},
         "targets": {"return_ratio_min": TARGET_RATIO, "overhead_max": TARGET_OVERHEAD},
         "envs": envs}, default=str), indent=2, allow_nan=False))
    png = plot(settings, out)

    lines = [
        "# prefrl benchmark: preferences vs. true-reward PPO", "",
        f"- command: `{settings['command']}`",
        f"- started: {settings['started']}; report written: {now()}",
        f"- machine: {info['nproc']} CPUs (`nproc`), {info['cpu']}, {info['ram']} RAM, {info['os']}",
        f"- software: Python {info['python']}, torch {info['torch']}, stable-baselines3 {info['stable-baselines3']}, "
        f"mujoco {info['mujoco']}, gymnasium {info['gymnasium']}, prefrl {info['prefrl']} (git {info['git']})",
        f"- budget: {settings['timesteps']:,} PPO timesteps per run, {settings['labels']} labels "
        f"({settings['oracle']} oracle) per preference run, seeds {' '.join(map(str, settings['seeds']))}"
        + (f", extra flags `{settings['extra']}`" if settings["extra"] else ""),
        f"- each pair (preference run, true-reward run; identical PPO settings) ran at the same time as two "
        f"processes (MUJOCO_GL=egl, OMP_NUM_THREADS=1), {max(1, settings['parallel'] // 2)} pair(s) at a time (--parallel {settings['parallel']})",
        f"- targets: return ratio pref/true ≥ {TARGET_RATIO}, wall-time overhead pref/true − 1 "
        f"≤ {TARGET_OVERHEAD:.0%}",
        "- returns are each run's final deterministic evaluation on the true reward (`true_return_mean` of "
        "summary.json); a seed's row shows ± the std over its evaluation episodes, the mean row ± the sample std "
        "over seeds; overhead = pref wall_seconds / true wall_seconds − 1 (training + final evaluation); "
        "CPU overhead the same with cpu_seconds; loop CPU = the CPU time the preference run spent in the loop's own "
        "parts (initial-policy experience, queries and answers, reward fits, the learned reward and the buffer "
        "on every step; `loop_cpu_seconds` of summary.json) / the true-reward run's cpu_seconds, which leaves out how "
        "differently the two agents behave (e.g. how often episodes end); training end = the mean true return of the "
        f"training episodes in the last {END_ROWS} rows of progress.csv, and its ratio pref/true (ratio of means over "
        "seeds), steadier than one final policy's deterministic episodes. When the true-reward run of a pair finishes first, the "
        "preference run gets the freed CPU, so the wall-time overhead reads low under load; CPU time does not.", "",
        "## Summary", "",
        "| env | seeds | true-reward PPO return | preference return | ratio pref/true | ≥ 0.9 | overhead | ≤ 15% "
        "| training-end ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for env, e in envs.items():
        lines.append(f"| {env} | {len(e['complete_seeds'])}/{len(e['seeds'])} "
                     f"| {fmt(e['true_return_mean'])} ± {fmt(e['true_return_std'])} "
                     f"| {fmt(e['pref_return_mean'])} ± {fmt(e['pref_return_std'])} "
                     f"| {fmt(e['return_ratio'], 3)} | {mark(e['ratio_ok'])} "
                     f"| {pct(e['overhead_mean'])} | {mark(e['overhead_ok'])} | {fmt(e['training_end_ratio'], 3)} |")
    notes = set()
    for env, e in envs.items():
        lines += ["", f"## {env}", "",
                  "| seed | true-reward PPO return | preference return | ratio pref/true | labels | "
                  "wall true (s) | wall pref (s) | overhead | CPU overhead | loop CPU | training end true / pref "
                  "| eval episode length true / pref |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for s in e["seeds"]:
            p, t = s["pref"]["summary"], s["true"]["summary"]

            def ret(summary):
                return (f"{fmt(summary['true_return_mean'])} ± {fmt(summary['true_return_std'])}"
                        if summary else "not finished")
            flag = ""
            if p and t and not s["side_by_side"]:
                flag = " †"
                notes.add("† the two runs of this pair did not run side by side in a single session "
                          "(skipped, resumed or run with --parallel 1): its overhead is less reliable.")
            lines.append(f"| {s['seed']} | {ret(t)} | {ret(p)} | {fmt(s['ratio'], 3)} "
                         f"| {p.get('labels', '–') if p else '–'} "
                         f"| {fmt(t['wall_seconds'], 0) if t else '–'} | {fmt(p['wall_seconds'], 0) if p else '–'} "
                         f"| {pct(s['overhead'])}{flag} | {pct(s.get('cpu_overhead', math.nan))} "
                         f"| {pct(s.get('loop_cpu_share', math.nan))} "
                         f"| {fmt(s['training_end']['true'], 0)} / {fmt(s['training_end']['pref'], 0)} "
                         f"| {fmt(eval_length(t), 0)} / {fmt(eval_length(p), 0)} |")
        done = [s for s in e["seeds"] if s["pref"]["summary"] and s["true"]["summary"]]
        walls = {m: mean_std([s[m]["summary"]["wall_seconds"] for s in done])[0] for m in MODES}
        lengths = {m: mean_std([eval_length(s[m]["summary"]) for s in done])[0] for m in MODES}
        labels = sorted({x for x in e["labels"] if x is not None})
        lines.append(f"| **mean ({len(done)} seed{'s' if len(done) != 1 else ''})** | **{fmt(e['true_return_mean'])} ± {fmt(e['true_return_std'])}** "
                     f"| **{fmt(e['pref_return_mean'])} ± {fmt(e['pref_return_std'])}** "
                     f"| **{fmt(e['return_ratio'], 3)}** (ratio of means) "
                     f"| {', '.join(map(str, labels)) or '–'} | {fmt(walls['true'], 0)} | {fmt(walls['pref'], 0)} "
                     f"| **{pct(e['overhead_mean'])}** (mean of seeds) | **{pct(e['cpu_overhead_mean'])}** "
                     f"| **{pct(e['loop_cpu_share_mean'])}** "
                     f"| **{fmt(e['training_end_true'], 0)} / {fmt(e['training_end_pref'], 0)}** "
                     f"| **{fmt(lengths['true'], 0)} / {fmt(lengths['pref'], 0)}** |")
        note = interval_note(e["return_ratio_interval"])
        lines += ["", note] if note else []
        parts = [s["pref"]["summary"].get("loop_cpu_seconds") for s in done]
        if parts and all(parts):
            lines += ["", "Loop CPU by part, mean over seeds (s): " + ", ".join(
                f"{k.replace('_', ' ')} {fmt(mean_std([x[k] for x in parts])[0], 1)}" for k in parts[0]) + "."]
        quarters = {s["seed"]: by_quarter(out, env, s["seed"]) for s in done}
        if any(quarters.values()):
            lines += ["", "CPU overhead in each quarter of training (the loop's own CPU in brackets; both over "
                      "the true-reward run's CPU in that quarter; from progress.csv):", "",
                      "| seed | 1st quarter | 2nd | 3rd | 4th |", "|---|---|---|---|---|"]
            lines += [f"| {seed} | " + " | ".join(f"{pct(o)} ({pct(l)})" for o, l in q) + " |"
                      for seed, q in quarters.items() if q]
        lines += ["", "| target | value | goal | met |", "|---|---|---|---|",
                  f"| return ratio pref/true | {fmt(e['return_ratio'], 3)} | ≥ {TARGET_RATIO} | {mark(e['ratio_ok'])} |",
                  f"| wall-time overhead | {pct(e['overhead_mean'])} | ≤ {TARGET_OVERHEAD:.0%} "
                  f"| {mark(e['overhead_ok'])} |",
                  f"| CPU-time overhead | {pct(e['cpu_overhead_mean'])} | ≤ {TARGET_OVERHEAD:.0%} "
                  f"| {mark(None if not finite(e['cpu_overhead_mean']) else e['cpu_overhead_mean'] <= TARGET_OVERHEAD)} |"]
        if finite(e["true_return_mean"]) and e["true_return_mean"] <= 0:
            lines.append("\nThe true-reward return is ≤ 0 here, so a return ratio is not meaningful (shown as –).")
    if notes:
        lines += [""] + sorted(notes)
    if png:
        lines += ["", "## Learning curves", "",
                  "Mean true return of the training episodes (progress.csv) against timesteps; "
                  "preference runs solid, true-reward runs dashed, one colour per seed.", "",
                  "![curves](curves.png)"]
    lines += ["", "Raw figures: `results.json`; run folders: `runs/<env>-s<seed>-{pref,true}/`.", ""]
    (out / "results.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}" + (f", {png}" if png else ""), flush=True)


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if args.parallel < 1:
        sys.exit("vs_true_reward.py: --parallel must be at least 1")
    settings = resolve(args, out)
    failed: list[str] = []
    if not args.report_only:
        out.mkdir(parents=True, exist_ok=True)
        (out / "invocation.json").write_text(json.dumps(settings, indent=2))
        try:
            failed = run_all(settings, out, args.parallel)
        except KeyboardInterrupt:
            return 130
    report(settings, out, rebuilt=args.report_only)
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)} (see their stderr.log)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
