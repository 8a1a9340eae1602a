#!/usr/bin/env python
"""One table from several `vs_true_reward.py` reports: every seed measured, per env.

Each benchmark folder holds the seeds one invocation ran. Seeds added later (a third
HalfCheetah seed, two more Hopper seeds) live in their own folders; this script reads
their ``results.json`` and writes the pooled figures, computed exactly as each report
computes its own (ratio of the mean returns over seeds, mean of the per-seed overheads).

    python benchmarks/combine.py benchmarks/results/mujoco:HalfCheetah-v5 \\
        benchmarks/results/halfcheetah-s2 --out benchmarks/results/mujoco-all

``DIR:ENV`` takes only that env's seeds from ``DIR`` (e.g. to leave out superseded
rows); a plain ``DIR`` takes every env in it. A seed of one env found in two folders
is an error: pooling it twice would weigh it double.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_true_reward import (MODES, TARGET_OVERHEAD, TARGET_RATIO, finite, fmt, interval_note, jsonable,  # noqa: E402
                            mark, mean_std, now, pct, pool, read_json, read_progress, safe, seed_row, training_end_return)


def gather(specs: list[str]) -> dict[str, list[dict]]:
    """env → rows (one per seed), each with the folder and commit it came from."""
    envs: dict[str, list[dict]] = {}
    for spec in specs:
        folder, _, only = spec.partition(":")
        data = read_json(Path(folder) / "results.json")
        if data is None:
            sys.exit(f"combine.py: no readable {folder}/results.json: give folders written by vs_true_reward.py")
        if only and only not in data["envs"]:
            sys.exit(f"combine.py: {folder} has no {only} (it has {', '.join(data['envs'])})")
        for env, e in data["envs"].items():
            if only and env != only:
                continue
            for s in e["seeds"]:
                p, t = s["pref"]["summary"], s["true"]["summary"]
                if not (p and t):
                    continue
                rows = envs.setdefault(env, [])
                if any(r["seed"] == s["seed"] for r in rows):
                    sys.exit(f"combine.py: {env} seed {s['seed']} appears twice (again in {folder}): take "
                             f"each env from one folder only, with DIR:ENV naming the env to take")
                row = {**seed_row(s), "folder": folder, "git": data["machine"].get("git", "?")}
                for m in MODES:  # reports from before the column: the folder's copies of progress.csv
                    if not finite(row.get(f"end_{m}", math.nan)):
                        row[f"end_{m}"] = training_end_return(
                            read_progress(Path(folder) / "progress" / f"{safe(env)}-s{s['seed']}-{m}.csv"))
                rows.append(row)
    return envs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", metavar="DIR[:ENV]", help="vs_true_reward.py output folders")
    parser.add_argument("--out", required=True, help="folder for the pooled results.md and results.json")
    args = parser.parse_args(argv)
    envs = gather(args.folders)
    figures = {env: {**pool(rows), "seeds": sorted(r["seed"] for r in rows),
                     "rows": sorted(rows, key=lambda r: r["seed"])} for env, rows in envs.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/combine.py " + " ".join(args.folders) + f" --out {args.out}"
    (out / "results.json").write_text(json.dumps(jsonable(
        {"command": command, "written": now(), "targets": {"return_ratio_min": TARGET_RATIO,
                                                          "overhead_max": TARGET_OVERHEAD},
         "envs": figures}), indent=2, allow_nan=False))
    lines = ["# prefrl benchmark, every seed: preferences vs. true-reward PPO", "",
             f"- command: `{command}`", f"- written: {now()}",
             "- pooled from the folders below; each folder's results.md has its command, machine, load "
             "and learning curves. Figures are computed as there: ratio = mean preference return / mean "
             "true-reward return over seeds; overhead = mean over seeds of pref wall / true wall − 1; CPU "
             "overhead the same with CPU time; loop CPU = the preference run's CPU in the loop's own parts / "
             "the true-reward run's CPU (– where the run did not record it); training end = mean true return of the "
             "training episodes in the last rows of each run's progress.csv (from the folder's `progress/` copies "
             "where its report predates the column), its ratio the ratio of the means over seeds.",
             f"- targets: return ratio ≥ {TARGET_RATIO}, overhead ≤ {TARGET_OVERHEAD:.0%}", "",
             "## Summary", "",
             "| env | seeds | true-reward PPO return | preference return | ratio pref/true | ≥ 0.9 "
             "| seeds ≥ 0.9 | overhead | ≤ 15% | CPU overhead | loop CPU | training-end ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for env, f in figures.items():
        lines.append(f"| {env} | {len(f['seeds'])} | {fmt(f['true_return_mean'])} ± {fmt(f['true_return_std'])} "
                     f"| {fmt(f['pref_return_mean'])} ± {fmt(f['pref_return_std'])} | {fmt(f['return_ratio'], 3)} "
                     f"| {mark(f['ratio_ok'])} | {f['seeds_at_target']}/{len(f['seeds'])} "
                     f"| {pct(f['overhead_mean'])} ± {f['overhead_std'] * 100:.1f} | {mark(f['overhead_ok'])} "
                     f"| {pct(f['cpu_overhead_mean'])} | {pct(f['loop_cpu_share_mean'])} "
                     f"| {fmt(f['training_end_ratio'], 3)} |")
    for env, f in figures.items():
        lines += ["", f"## {env}", "", "| seed | true-reward PPO return | preference return | ratio | labels "
                  "| overhead | CPU overhead | loop CPU | training end true / pref | eval episode length true / pref "
                  "| folder (commit) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['seed']} | {fmt(r['true'])} | {fmt(r['pref'])} | {fmt(r['ratio'], 3)} | {r['labels']} "
                  f"| {pct(r['overhead'])} | {pct(r.get('cpu_overhead', math.nan))} "
                  f"| {pct(r.get('loop_cpu_share', math.nan))} | {fmt(r['end_true'], 0)} / {fmt(r['end_pref'], 0)} "
                  f"| {fmt(r['len_true'], 0)} / {fmt(r['len_pref'], 0)} "
                  f"| `{r['folder']}` ({r['git']}) |" for r in f["rows"]]
        lines.append("")
        spread = (f"± is the sample std over seeds. Std of the per-seed ratios: "
                  f"{fmt(mean_std([r['ratio'] for r in f['rows']])[1], 3)}.")
        lines.append(" ".join(filter(None, [spread, interval_note(f["return_ratio_interval"])])))
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
