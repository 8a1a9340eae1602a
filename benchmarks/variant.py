#!/usr/bin/env python
"""Does a changed setting keep the preference agent's return? Its runs beside a committed report's.

A `vs_true_reward.py` report pairs each seed's preference run with a true-reward run. On
the same kind of machine a true-reward run repeats to the digit (FINDINGS sections 9–10),
so a variant of the preference loop (another flag, another commit) can be measured with
preference runs alone, against the report's runs of the same seeds, at half the machine
time. This script puts a folder of such runs (``RUNS/<env>-s<seed>-pref/``, made with
``prefrl train ... --seed S``) beside the report:

- per seed: the true-reward return, the report's preference return and ratio, the variant's,
  mean evaluation episode lengths, training end, and each preference run's reward-fit CPU;
- over seeds: both ratios of mean returns, the mean per-seed change of the ratio with a
  bootstrap interval over seeds, and the loop's CPU share of the report's true-reward runs.

CPU seconds here come from runs of different days, which the machine's load moves (FINDINGS
section 10); take wall-time overhead from side-by-side pairs only.

    python benchmarks/variant.py benchmarks/results/hopper-s8-19-intel /tmp/e4/runs \\
        --env Hopper-v5 --name "--reward-epochs 4" --out benchmarks/results/reward-epochs4-intel
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine_info import machine  # noqa: E402
from vs_true_reward import (BOOTSTRAP_DRAWS, bootstrap_interval, eval_length, finite, fmt, jsonable, mean_std, now,  # noqa: E402
                            pct, read_json, read_progress, safe, training_end_return)


def rows_for(baseline: Path, runs: Path, env: str) -> list[dict]:
    """One row per seed that both the report and ``runs`` finished."""
    data = read_json(baseline / "results.json")
    if data is None or env not in data.get("envs", {}):
        sys.exit(f"variant.py: {baseline}/results.json has no {env}: give a folder written by vs_true_reward.py")
    rows = []
    for entry in data["envs"][env]["seeds"]:
        run = runs / f"{safe(env)}-s{entry['seed']}-pref"
        summary, base, true = read_json(run / "summary.json"), entry["pref"]["summary"], entry["true"]["summary"]
        if not (summary and base and true):
            continue
        rows.append({"seed": entry["seed"], "run": run, "true": true["true_return_mean"],
                     "base": base["true_return_mean"], "variant": summary["true_return_mean"],
                     "len_true": eval_length(true), "len_base": eval_length(base), "len_variant": eval_length(summary),
                     "end_true": entry.get("training_end", {}).get("true", math.nan),
                     "end_base": entry.get("training_end", {}).get("pref", math.nan),
                     "end_variant": training_end_return(read_progress(run)),
                     "fits_base": base["loop_cpu_seconds"]["reward_fits"],
                     "fits_variant": summary["loop_cpu_seconds"]["reward_fits"],
                     "loop_base": sum(base["loop_cpu_seconds"].values()) / true["cpu_seconds"],
                     "loop_variant": sum(summary["loop_cpu_seconds"].values()) / true["cpu_seconds"],
                     "labels": summary.get("labels")})
    return rows


def summarize(rows: list[dict]) -> dict:
    true = mean_std([r["true"] for r in rows])[0]
    out = {"seeds": [r["seed"] for r in rows], "true_return_mean": true}
    for side in ("base", "variant"):
        out[f"{side}_return_mean"], out[f"{side}_return_std"] = mean_std([r[side] for r in rows])
        out[f"{side}_ratio"] = out[f"{side}_return_mean"] / true
        out[f"{side}_seeds_at_0.9"] = sum(r[side] / r["true"] >= 0.9 for r in rows)
        out[f"{side}_eval_length"] = mean_std([r[f"len_{side}"] for r in rows])[0]
        out[f"{side}_training_end_ratio"] = mean_std([r[f"end_{side}"] for r in rows])[0] / mean_std(
            [r["end_true"] for r in rows])[0]
        out[f"{side}_reward_fits_cpu"] = mean_std([r[f"fits_{side}"] for r in rows])[0]
        out[f"{side}_loop_cpu_share"] = mean_std([r[f"loop_{side}"] for r in rows])[0]
    change = [(r["variant"] - r["base"]) / r["true"] for r in rows]  # per seed
    out["ratio_change_mean"] = mean_std(change)[0]
    out["ratio_change_interval"] = bootstrap_interval([change], lambda drawn: drawn.mean(1))
    out["eval_length_true"] = mean_std([r["len_true"] for r in rows])[0]
    return out


def report(baseline: Path, runs: Path, env: str, name: str, rows: list[dict], s: dict, command: str) -> str:
    info = machine()
    lines = [f"# {env}: `{name}` against {baseline.name}", "",
             f"- command: `{command}`", f"- report written: {now()}",
             f"- machine: {info['nproc']} CPUs, {info['cpu']}, {info['ram']} RAM; prefrl git {info['git']}",
             f"- baseline: `{baseline}` (its `results.md` has its command, commit and machine); the variant's "
             f"preference runs: `{runs}`, their `progress.csv` in `progress/`",
             "- returns are final deterministic evaluations on the true reward; ratio = preference / the "
             "baseline's true-reward return of the same seed; loop CPU = the preference run's loop parts / "
             "the baseline true-reward run's CPU (runs of different days: see the script's doc)", "",
             "| seed | true-reward PPO | baseline pref | ratio | variant pref | ratio | eval length true / base / variant "
             "| training end true / base / variant | reward fits CPU base / variant (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {fmt(r['true'])} | {fmt(r['base'])} | {fmt(r['base'] / r['true'], 3)} | "
                     f"{fmt(r['variant'])} | {fmt(r['variant'] / r['true'], 3)} | "
                     f"{fmt(r['len_true'], 0)} / {fmt(r['len_base'], 0)} / {fmt(r['len_variant'], 0)} | "
                     f"{fmt(r['end_true'], 0)} / {fmt(r['end_base'], 0)} / {fmt(r['end_variant'], 0)} | "
                     f"{fmt(r['fits_base'])} / {fmt(r['fits_variant'])} |")
    low, high = s["ratio_change_interval"]
    lines += [f"| **mean ({len(rows)} seeds)** | **{fmt(s['true_return_mean'])}** | **{fmt(s['base_return_mean'])}** | "
              f"**{fmt(s['base_ratio'], 3)}** | **{fmt(s['variant_return_mean'])}** | **{fmt(s['variant_ratio'], 3)}** | "
              f"{fmt(s['eval_length_true'], 0)} / {fmt(s['base_eval_length'], 0)} / {fmt(s['variant_eval_length'], 0)} | "
              f"ratio {fmt(s['base_training_end_ratio'], 3)} / {fmt(s['variant_training_end_ratio'], 3)} | "
              f"{fmt(s['base_reward_fits_cpu'])} / {fmt(s['variant_reward_fits_cpu'])} |", "",
              f"Seeds at ratio ≥ 0.9: baseline {s['base_seeds_at_0.9']}/{len(rows)}, variant "
              f"{s['variant_seeds_at_0.9']}/{len(rows)}. Per-seed ratio change (variant − baseline), mean "
              f"{s['ratio_change_mean']:+.3f}" + (f"; over seeds drawn with replacement ({BOOTSTRAP_DRAWS:,} draws), "
                                                 f"5th to 95th percentile {low:+.3f} to {high:+.3f}." if finite(low) else "."), "",
              f"Loop CPU, share of the true-reward run's: baseline {pct(s['base_loop_cpu_share'])}, variant "
              f"{pct(s['variant_loop_cpu_share'])}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path, help="a folder written by vs_true_reward.py")
    parser.add_argument("runs", type=Path, help="a folder of the variant's run folders, <env>-s<seed>-pref")
    parser.add_argument("--env", required=True)
    parser.add_argument("--name", required=True, help="what the variant changes, for the report's title")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rows = rows_for(args.baseline, args.runs, args.env)
    if not rows:
        sys.exit(f"variant.py: no finished {args.env} preference runs in {args.runs} with a seed of {args.baseline}")
    summary = summarize(rows)
    command = shlex.join(["python", "benchmarks/variant.py", *(argv if argv is not None else sys.argv[1:])])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "progress").mkdir(exist_ok=True)
    for r in rows:
        shutil.copy(r["run"] / "progress.csv", args.out / "progress" / f"{safe(args.env)}-s{r['seed']}-pref.csv")
    (args.out / "results.md").write_text(report(args.baseline, args.runs, args.env, args.name, rows, summary, command))
    (args.out / "results.json").write_text(json.dumps(jsonable({"command": command, "summary": summary, "rows": [
        {**r, "run": str(r["run"]), "summary": read_json(r["run"] / "summary.json")} for r in rows]}), indent=1))
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
