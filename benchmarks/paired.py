#!/usr/bin/env python
"""A PPO setting changed for both arms: each arm's return with it, seed by seed, against without.

`variant.py` measures a change to the preference loop alone against a report's true-reward
runs. A PPO setting (``--lr-schedule``, ``--log-std-init``) changes the baseline too, so a
higher ratio can come from a weaker true-reward agent. This script sets side-by-side reports
of the same seeds (``vs_true_reward.py`` folders, pooled as `combine.py` pools them) with and
without the setting next to each other and asks the two questions apart:

- did the preference agent gain? mean per-seed change of its return, with a bootstrap
  interval over seeds, and on how many seeds it rose;
- did true-reward PPO lose? the same for the baseline arm;

and, for completeness, both pooled ratios and their per-seed change.

    python benchmarks/paired.py --base benchmarks/results/hopper-s8-19-intel \\
        --variant benchmarks/results/lr-schedule-linear /tmp/lin2 \\
        --env Hopper-v5 --name "--lr-schedule linear" --out benchmarks/results/lr-schedule-linear-all
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from combine import gather  # noqa: E402
from vs_true_reward import BOOTSTRAP_DRAWS, MODES, bootstrap_interval, finite, fmt, jsonable, mean_std, now, pct  # noqa: E402

ARMS = {"true": "true-reward PPO", "pref": "preferences"}


def pair_rows(base: list[str], variant: list[str], env: str) -> list[dict]:
    """One row per seed finished in both: each arm's return and each run's figures, both settings."""
    sides = {}
    for name, specs in (("base", base), ("variant", variant)):
        rows = gather(specs).get(env, [])
        sides[name] = {r["seed"]: r for r in rows}
    seeds = sorted(set(sides["base"]) & set(sides["variant"]))
    return [{"seed": s, "base": sides["base"][s], "variant": sides["variant"][s]} for s in seeds]


def summarize(rows: list[dict]) -> dict:
    out: dict = {"seeds": [r["seed"] for r in rows]}
    for arm in MODES:
        base = [r["base"][arm] for r in rows]
        variant = [r["variant"][arm] for r in rows]
        change = [v - b for b, v in zip(base, variant)]
        out[arm] = {"base_mean": mean_std(base)[0], "variant_mean": mean_std(variant)[0],
                    "change_mean": mean_std(change)[0],
                    "change_interval": bootstrap_interval([change], lambda drawn: drawn.mean(1)),
                    "seeds_higher": sum(c > 0 for c in change),
                    "base_eval_length": mean_std([r["base"][f"len_{arm}"] for r in rows])[0],
                    "variant_eval_length": mean_std([r["variant"][f"len_{arm}"] for r in rows])[0],
                    "base_training_end": mean_std([r["base"][f"end_{arm}"] for r in rows])[0],
                    "variant_training_end": mean_std([r["variant"][f"end_{arm}"] for r in rows])[0]}
    for side in ("base", "variant"):
        out[f"{side}_ratio"] = out["pref"][f"{side}_mean"] / out["true"][f"{side}_mean"]
        out[f"{side}_overhead"] = mean_std([r[side]["overhead"] for r in rows])[0]
        out[f"{side}_seeds_at_0.9"] = sum(r[side]["ratio"] >= 0.9 for r in rows)
    ratio_change = [r["variant"]["ratio"] - r["base"]["ratio"] for r in rows]
    out["ratio_change_mean"] = mean_std(ratio_change)[0]
    out["ratio_change_interval"] = bootstrap_interval([ratio_change], lambda drawn: drawn.mean(1))
    return out


def interval(low_high: tuple[float, float], digits: int = 1) -> str:
    low, high = low_high
    return f"{low:+,.{digits}f} to {high:+,.{digits}f}" if finite(low) else "–"


def report(args: argparse.Namespace, rows: list[dict], s: dict, command: str) -> str:
    n = len(rows)
    lines = [f"# {args.env}: `{args.name}` for both arms, against without it", "",
             f"- command: `{command}`", f"- written: {now()}",
             f"- without: {', '.join(f'`{b}`' for b in args.base)}; with: {', '.join(f'`{v}`' for v in args.variant)} "
             "(each folder's results.md has its command, commit, machine and curves)",
             "- returns are final deterministic evaluations on the true reward; change = with − without, "
             f"per seed; interval = 5th to 95th percentile of the mean change over seeds drawn with replacement "
             f"({BOOTSTRAP_DRAWS:,} draws)", "",
             "| seed | true-reward PPO without / with | preferences without / with | ratio without / with "
             "| eval length true without / with | eval length pref without / with | overhead without / with |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        b, v = r["base"], r["variant"]
        lines.append(f"| {r['seed']} | {fmt(b['true'])} / {fmt(v['true'])} | {fmt(b['pref'])} / {fmt(v['pref'])} "
                     f"| {fmt(b['ratio'], 3)} / {fmt(v['ratio'], 3)} | {fmt(b['len_true'], 0)} / {fmt(v['len_true'], 0)} "
                     f"| {fmt(b['len_pref'], 0)} / {fmt(v['len_pref'], 0)} | {pct(b['overhead'])} / {pct(v['overhead'])} |")
    lines += ["", f"## Over the {n} seeds", "",
              "| arm | without | with | mean change | interval | seeds higher with | eval length without / with "
              "| training end without / with |", "|---|---|---|---|---|---|---|---|"]
    for arm, label in ARMS.items():
        a = s[arm]
        lines.append(f"| {label} | {fmt(a['base_mean'])} | {fmt(a['variant_mean'])} | {a['change_mean']:+,.1f} "
                     f"| {interval(a['change_interval'])} | {a['seeds_higher']}/{n} "
                     f"| {fmt(a['base_eval_length'], 0)} / {fmt(a['variant_eval_length'], 0)} "
                     f"| {fmt(a['base_training_end'], 0)} / {fmt(a['variant_training_end'], 0)} |")
    lines += ["", f"Ratio of mean returns: without {fmt(s['base_ratio'], 3)}, with {fmt(s['variant_ratio'], 3)}; "
              f"per-seed ratio change {s['ratio_change_mean']:+.3f} (interval {interval(s['ratio_change_interval'], 3)}). "
              f"Seeds at ratio ≥ 0.9: {s['base_seeds_at_0.9']}/{n} without, {s['variant_seeds_at_0.9']}/{n} with. "
              f"Wall-time overhead, mean of seeds: {pct(s['base_overhead'])} without, {pct(s['variant_overhead'])} with.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", nargs="+", required=True, metavar="DIR[:ENV]", help="reports without the setting")
    parser.add_argument("--variant", nargs="+", required=True, metavar="DIR[:ENV]", help="reports with it")
    parser.add_argument("--env", required=True)
    parser.add_argument("--name", required=True, help="the setting, for the report's title")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rows = pair_rows(args.base, args.variant, args.env)
    if not rows:
        sys.exit(f"paired.py: no {args.env} seed finished both with and without the setting: check the folders")
    summary = summarize(rows)
    command = shlex.join(["python", "benchmarks/paired.py", *(argv if argv is not None else sys.argv[1:])])
    args.out.mkdir(parents=True, exist_ok=True)
    text = report(args, rows, summary, command)
    (args.out / "results.md").write_text(text, encoding="utf-8")
    (args.out / "results.json").write_text(json.dumps(jsonable({"command": command, "summary": summary, "rows": rows}),
                                                      indent=1, allow_nan=False))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
