"""Every setting of a run in one typed dataclass; the CLI flags and the YAML file
(``--config``) are generated from it, and flags override the file.

:class:`FeedbackConfig` holds what every preference run shares (budget, labelers, query
selection, reward-model fitting); :class:`TrainConfig` adds the control world (gymnasium
env, SB3 PPO) and :class:`prefrl.lm.config.LMConfig` the language world.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from prefrl.errors import UserError


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class FeedbackConfig:
    """Settings shared by every preference run: who answers, how queries are chosen, the fit."""

    run_dir: str = _f("", "folder for the store, checkpoints, logs and summary.json")
    labels: int = _f(700, "total preference answers to ask for (the label budget)")
    oracle: str = _f("perfect", "who answers: human, backflip (scripted judge), or a B-Pref teacher: perfect, stochastic, mistake, myopic, skip, equal")
    no_window: bool = _f(False, "with --oracle human: open no labeling window here (use `prefrl label RUN_DIR`)")
    oracle_beta: float | None = _f(None, "rationality of the stochastic teacher (B-Pref)")
    oracle_gamma: float | None = _f(None, "discount of the myopic teacher; later steps weigh more")
    oracle_eps: float | None = _f(None, "probability the mistake teacher flips its answer")
    oracle_skip: float | None = _f(None, "skip threshold, as a fraction of the mean clip return")
    oracle_equal: float | None = _f(None, "tie threshold, as a fraction of the mean clip return")
    selector: str = _f("disagreement", "query selection: disagreement, entropy or random")
    oversample: int = _f(10, "candidate pairs sampled per query asked (Christiano et al. §2.3: 10)")
    initial_label_fraction: float = _f(0.25, "share of the budget asked from the initial policy (A.1: 25 percent)")
    label_cap: int = _f(0, "fit on the newest N answers only; 0 = all (A.2 Atari kept the last 3000)")
    ensemble_size: int = _f(3, "reward-model members (§2.2.1: 3)")
    reward_lr: float = _f(1e-3, "reward-model learning rate")
    reward_epochs: int = _f(8, "passes over the labels per refit (the first fit runs 5x as many)")
    reward_batch_size: int = _f(64, "clip pairs per reward-model gradient step")
    reward_min_steps: int = _f(25, "reward-model gradient steps per member per refit, at least (the first fit runs 5x as many)")
    seed: int = _f(0, "seed for the environments, PPO, the oracle and query selection")

    COMMAND = "prefrl train"  # where a user reads the settings
    POSITIVE = ("ensemble_size", "reward_epochs", "reward_batch_size", "reward_min_steps", "oversample")
    NON_NEGATIVE = ("label_cap",)
    POSITIVE_REAL = ("reward_lr",)

    def validate(self):
        if not self.run_dir:
            raise UserError("no run directory given: pass --run-dir PATH")
        for name in self.POSITIVE:
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be a positive number (got {getattr(self, name)})")
        for name in self.NON_NEGATIVE:
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must not be negative (got {getattr(self, name)})")
        for name in self.POSITIVE_REAL:
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise UserError(f"--{name.replace('_', '-')} must be a positive number (got {value})")
        if not 0 <= self.initial_label_fraction <= 1:
            raise UserError(f"--initial-label-fraction must be in [0, 1] (got {self.initial_label_fraction})")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainConfig(FeedbackConfig):
    """A preference-learning (or true-reward) training run on a gymnasium env."""

    env: str = _f("", "gymnasium id, e.g. HalfCheetah-v5, prefrl/HopperNoTerm-v0 or mymodule:MyEnv-v0")
    timesteps: int = _f(1_000_000, "agent environment steps for PPO")
    true_reward: bool = _f(False, "train PPO on the environment's own reward (the baseline); no labels")
    clip_steps: int = _f(0, "steps per clip; 0 = about 1.5 s of simulated time, 15 to 60 steps")
    initial_labels: int = _f(0, "labels asked from the initial policy, overriding the share if > 0 (A.2 Atari: 500)")
    reward_model: str = _f("auto", "reward model: mlp, cnn (pixels), or auto (cnn for image observations)")
    label_horizon: float = _f(2e6, "label rate ∝ h/(T+h) after the initial share (A.1: 2e6 MuJoCo)")
    label_end: float = _f(1.0, "share of --timesteps by which the whole label budget is asked; the reward stays fixed after it")
    refit_every: int = _f(32_768, "agent steps between label requests and reward refits")
    reward_hidden: int = _f(64, "hidden units per layer of each member (A.1: 64)")
    buffer_steps: int = _f(100_000, "recent agent steps kept to cut candidate clips from")
    n_envs: int = _f(4, "parallel environments (DummyVecEnv)")
    n_steps: int = _f(512, "PPO rollout length per environment")
    batch_size: int = _f(64, "PPO minibatch size")
    n_epochs: int = _f(10, "PPO epochs per rollout")
    learning_rate: float = _f(3e-4, "PPO learning rate")
    # Linear, as in the reference PPO's MuJoCo settings (baselines ppo2: lr = 3e-4 * share of the run left) and
    # the PPO paper's Atari settings (Schulman et al. 2017, Table 5); on Hopper it raised the preference
    # agent's final return on 9 of 11 seeds (benchmarks/results/FINDINGS.md, section 16).
    lr_schedule: str = _f("linear", "PPO learning rate over the run: linear (falls toward 0 by --timesteps), or constant")
    gamma: float = _f(0.99, "PPO discount")
    gae_lambda: float = _f(0.95, "PPO GAE lambda")
    clip_range: float = _f(0.2, "PPO clip range")
    ent_coef: float = _f(0.0, "PPO entropy bonus")
    net_arch: int = _f(64, "PPO policy/value hidden units (two layers)")
    log_std_init: float = _f(0.0, "PPO's initial log standard deviation of its Gaussian actions (0: std 1)")
    eval_episodes: int = _f(10, "deterministic episodes on the true reward at the end")

    POSITIVE = FeedbackConfig.POSITIVE + ("timesteps", "n_envs", "n_steps", "batch_size", "n_epochs",
                                          "reward_hidden", "refit_every", "buffer_steps", "net_arch")
    NON_NEGATIVE = FeedbackConfig.NON_NEGATIVE + ("eval_episodes", "clip_steps", "initial_labels")
    POSITIVE_REAL = FeedbackConfig.POSITIVE_REAL + ("learning_rate", "label_horizon")
    # A setting whose default changed: the value a run made before the setting existed (its run.json
    # lacks the key) trained with, so that `--resume` goes on as it began.
    BEFORE_SETTING = {"lr_schedule": "constant"}

    def validate(self) -> TrainConfig:
        if not self.env:
            raise UserError("no environment given: pass --env ID (e.g. --env HalfCheetah-v5)")
        super().validate()
        if not self.true_reward and self.labels <= 0:
            raise UserError(f"--labels must be a positive number (got {self.labels}); use --true-reward to train without labels")
        if not 0 < self.label_end <= 1:
            raise UserError(f"--label-end must be above 0 and at most 1 (got {self.label_end}): the share of --timesteps "
                            "by which all labels are asked")
        if not math.isfinite(self.log_std_init):
            raise UserError(f"--log-std-init must be a finite number (got {self.log_std_init}), e.g. -1 for std 0.37")
        if self.lr_schedule not in ("constant", "linear"):
            raise UserError(f"unknown --lr-schedule '{self.lr_schedule}': use constant or linear")
        if self.reward_model not in ("auto", "mlp", "cnn"):
            raise UserError(f"unknown --reward-model '{self.reward_model}': use auto, mlp or cnn")
        return self


def fields(cls: type = TrainConfig) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls))


def presets(env_id: str) -> dict:
    """Defaults that differ by domain; the YAML file and flags override them.

    Atari (A.2): 500 labels up front, rate ∝ 5e6/(T+5e6), clips of 25 agent steps, the
    newest 3000 answers, and the usual PPO settings for Atari.
    """
    from prefrl.atari import (ATARI_CLIP_STEPS, ATARI_HORIZON, ATARI_INITIAL_LABELS, ATARI_LABEL_CAP,
                              ATARI_PPO, is_atari)

    if not is_atari(env_id):
        return {}
    known = {f.name for f in fields()}
    return {**{k: v for k, v in ATARI_PPO.items() if k in known}, "initial_labels": ATARI_INITIAL_LABELS,
            "label_horizon": ATARI_HORIZON, "clip_steps": ATARI_CLIP_STEPS, "label_cap": ATARI_LABEL_CAP,
            # A CNN step on 64 pairs of 25 frames takes seconds on a CPU: smaller, fewer steps.
            "reward_batch_size": 16, "reward_epochs": 1, "reward_min_steps": 25}


def load_yaml(path: str | Path, cls: type = TrainConfig) -> dict:
    """Settings from a YAML mapping whose keys are fields of ``cls`` (dashes or underscores)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist: check the path given to --config") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"config file {path} is not valid YAML ({str(err).splitlines()[0]}): fix it or drop --config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of settings (key: value), not {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise UserError(f"config file {path}: unknown setting '{key}'; see `{cls.COMMAND} --help` for the settings")
        out[name] = value
    return out


def build(values: dict, cls: type = TrainConfig):
    """A validated ``cls`` from a mapping of field values (types coerced, errors as UserError)."""
    kwargs = {}
    for f in fields(cls):
        if f.name not in values or values[f.name] is None:
            continue
        value = values[f.name]
        kind = type(f.default) if f.default is not None else float
        try:
            if kind is bool and not isinstance(value, bool):
                raise ValueError(value)
            kwargs[f.name] = kind(float(value)) if kind is int and isinstance(value, (str, float)) else kind(value)
            if kind is int and float(value) != kwargs[f.name]:
                raise ValueError(value)
        except (TypeError, ValueError):
            raise UserError(f"setting {f.name} = {value!r} is not a valid {kind.__name__}") from None
    return cls(**kwargs).validate()
