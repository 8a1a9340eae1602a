"""``prefrl`` command line: ``train``, ``eval``, ``label``, ``play`` and ``lm train|label|sample``.

Training flags come from the config dataclasses (:class:`prefrl.config.TrainConfig`,
:class:`prefrl.lm.config.LMConfig`).

A user's mistake ends with one line on stderr, ``prefrl: <problem>: <what to do>``, and
exit code 2; nothing on disk is touched by a command that fails its checks.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prefrl import config as config_mod
from prefrl.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's usage block
        raise UserError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="prefrl", description="Reinforcement learning from human preferences.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train a policy from preferences (or the true reward)",
                           description="Train PPO on a reward learned from preference answers.")
    _add_config_flags(train, config_mod.TrainConfig)
    train.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="evaluate a run's policy on the true reward, print JSON")
    ev.add_argument("run_dir", help="a folder made by `prefrl train`")
    ev.add_argument("--episodes", type=int, default=10, help="deterministic evaluation episodes")
    ev.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes")
    ev.set_defaults(func=_eval)

    label = sub.add_parser("label", help="open a comparison window and answer a run's queries",
                           description="Answer a run's queries in a window; any number can run at once.")
    label.add_argument("run_dir", help="a folder made by `prefrl train`")
    label.add_argument("--labeler", help="your name in the store (default: user@host:pid)")
    label.set_defaults(func=_label)

    play = sub.add_parser("play", help="watch a run's policy in a window, or write a video")
    play.add_argument("run_dir", help="a folder made by `prefrl train`")
    play.add_argument("--video", metavar="FILE", help="write FILE.mp4 or FILE.gif instead of opening a window")
    play.add_argument("--episodes", type=int, default=1, help="episodes to play")
    play.add_argument("--seed", type=int, default=0, help="seed of the episodes")
    play.set_defaults(func=_play)
    _add_lm_commands(sub)
    return parser


def _add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """``--config``, ``--resume``, ``--no-progress`` and one flag per field of ``cls``."""
    parser.add_argument("--config", metavar="FILE.yaml", help="settings file; flags override it")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    for f in config_mod.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool) and f.name.startswith("no_"):
            # A --no-X/--no-no-X pair would read "--no-window" as "not no_window" (argparse's
            # BooleanOptionalAction negates any flag spelled --no-...): a plain switch instead.
            parser.add_argument(flag, action="store_true", default=None, help=f.metadata["help"])
        elif f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f"{f.metadata['help']} (default: {'on' if f.default else 'off'})")
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(f.type).split(" ")[0], float)
            parser.add_argument(flag, type=kind, default=None, metavar=f.name.upper(),
                                help=f"{f.metadata['help']} (default: {f.default})")


def _config_from_args(args, cls: type, presets: dict | None = None):
    """Defaults < presets < the resumed run's config < ``--config`` file < flags."""
    from prefrl import rundir

    given = {f.name: getattr(args, f.name) for f in config_mod.fields(cls) if getattr(args, f.name) is not None}
    values: dict = dict(presets or {})
    if args.resume and given.get("run_dir"):
        values.update({**getattr(cls, "BEFORE_SETTING", {}), **rundir.read_run(Path(given["run_dir"]))["config"]})
    if args.config:
        values.update(config_mod.load_yaml(args.config, cls))
    values.update(given)
    return config_mod.build(values, cls)


def _add_lm_commands(sub) -> None:
    lm = sub.add_parser("lm", help="the same loop for language models: train, label, sample",
                        description="InstructGPT-style RLHF: SFT, a reward model from comparisons, PPO with a KL penalty.")
    lm_sub = lm.add_subparsers(dest="lm_command", required=True, parser_class=_Parser)
    from prefrl.lm.config import LMConfig

    train = lm_sub.add_parser("train", help="SFT, then reward learning and PPO side by side",
                              description="Fine-tune a causal LM on a task's demonstrations, then optimise it by "
                                          "PPO against a reward ensemble fitted to preference answers.")
    _add_config_flags(train, LMConfig)
    train.set_defaults(func=_lm_train)

    label = lm_sub.add_parser("label", help="answer a language run's queries in a window (or the terminal)",
                              description="Compare two responses to one prompt; any number of labelers can run at once.")
    label.add_argument("run_dir", help="a folder made by `prefrl lm train`")
    label.add_argument("--labeler", help="your name in the store (default: user@host:pid)")
    label.add_argument("--terminal", action="store_true", help="answer in this terminal instead of a window")
    label.set_defaults(func=_lm_label)

    sample = lm_sub.add_parser("sample", help="sample responses from a language run's policy, print JSON")
    sample.add_argument("run_dir", help="a folder made by `prefrl lm train`")
    sample.add_argument("--prompt", action="append", required=True, help="a prompt (repeat for several)")
    sample.add_argument("--n", type=int, default=1, help="responses per prompt")
    sample.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    sample.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    sample.add_argument("--max-new-tokens", type=int, default=0, help="0 = the task's response length")
    sample.add_argument("--sft", action="store_true", help="sample from the SFT model instead of the policy")
    sample.add_argument("--seed", type=int, default=0, help="sampling seed")
    sample.set_defaults(func=_lm_sample)


def _lm_train(args) -> int:
    from prefrl.lm.config import LMConfig
    from prefrl.lm.loop import train_lm

    summary = train_lm(_config_from_args(args, LMConfig), resume=args.resume, progress=not args.no_progress)
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


def _lm_label(args) -> int:
    from prefrl import rundir

    saved = rundir.read_run(Path(args.run_dir))
    if not str(saved["config"].get("env", "")).startswith("lm:"):
        raise UserError(f"{args.run_dir} is not a language run: label it with `prefrl label {args.run_dir}`")
    try:
        if args.terminal:
            from prefrl.ui.terminal import run
        else:
            from prefrl.ui.labeler import run
    except ImportError as err:
        raise UserError(f"labeling needs pygame ({err.name} is missing): pip install 'prefrl[ui]'") from None
    print(json.dumps(run(args.run_dir, labeler=args.labeler), indent=2))
    return 0


def _lm_sample(args) -> int:
    from prefrl.lm.sample import sample

    out = sample(args.run_dir, args.prompt, n=args.n, greedy=args.greedy, temperature=args.temperature,
                 max_new_tokens=args.max_new_tokens, sft=args.sft, seed=args.seed)
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def _label(args) -> int:
    from prefrl import rundir
    from prefrl.ui.labeler import run

    rundir.read_run(Path(args.run_dir))
    print(json.dumps(run(args.run_dir, labeler=args.labeler), indent=2))
    return 0


def _play(args) -> int:
    from prefrl.play import play

    if args.episodes <= 0:
        raise UserError(f"--episodes must be a positive number (got {args.episodes})")
    print(json.dumps(play(args.run_dir, video=args.video, episodes=args.episodes, seed=args.seed), indent=2))
    return 0


def _train(args) -> int:
    from prefrl.loop import train

    env_id = args.env or (config_mod.load_yaml(args.config).get("env") if args.config else None)
    presets = config_mod.presets(str(env_id)) if env_id else {}
    summary = train(_config_from_args(args, config_mod.TrainConfig, presets), resume=args.resume,
                    progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0


def _eval(args) -> int:
    from prefrl import rundir

    if args.episodes <= 0:
        raise UserError(f"--episodes must be a positive number (got {args.episodes})")
    run_dir = Path(args.run_dir)
    env_id = rundir.read_run(run_dir)["config"]["env"]
    policy_path = rundir.policy_path(run_dir)
    from stable_baselines3 import PPO

    from prefrl.evaluation import evaluate

    results = evaluate(PPO.load(policy_path, device="cpu"), env_id, args.episodes, seed=args.seed)
    print(json.dumps({"env": env_id, "policy": str(policy_path), **results}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UserError as err:
        print(f"prefrl: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prefrl: interrupted; every recorded answer is in the store, continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
