"""``LMConfig``: the settings of ``prefrl lm train`` (flags and YAML keys, as for control runs)."""
from __future__ import annotations

from dataclasses import dataclass

from prefrl.config import FeedbackConfig, _f
from prefrl.errors import UserError


@dataclass
class LMConfig(FeedbackConfig):
    """InstructGPT's three stages on a task, with the preference loop of the control side.

    Defaults are sized for the shipped tasks and a tiny GPT-2 on a CPU; the paper's values
    are cited where they apply.
    """

    task: str = _f("arithmetic", "shipped task (arithmetic, length, chinese) or module:callable returning a Task")
    model: str = _f("", "local transformers causal LM folder (save_pretrained); empty = a tiny GPT-2 trained from scratch")
    labels: int = _f(2000, "total preference answers to ask for (the label budget)")
    oracle: str = _f("perfect", "who answers: human, or a B-Pref teacher on the task's gold score: perfect, stochastic, mistake, myopic, skip, equal")
    no_window: bool = _f(False, "with --oracle human: open no labeling window here (use `prefrl lm label RUN_DIR`)")
    true_reward: bool = _f(False, "PPO on the task's gold score itself (the baseline); no labels")
    initial_label_fraction: float = _f(0.5, "share of the budget asked about SFT samples before PPO starts")
    label_horizon: float = _f(2000.0, "label rate ∝ h/(n+h) over n sampled PPO responses after the initial share")
    responses_per_prompt: int = _f(4, "K responses sampled per prompt; the most disputed of their pairs are asked (InstructGPT: 4 to 9)")
    random_first_batch: bool = _f(True, "ask the first batch (before any answer) at random: unfitted members disagree only by their initialisation")
    kwise: bool = _f(False, "fit all answered pairs of one prompt as one batch element (InstructGPT §3.5)")
    reward_lr: float = _f(1e-4, "reward-model learning rate (the members are transformers)")
    reward_l2: float = _f(1e-6, "initial L2 weight of the reward members, then adapted (§2.2.3)")
    reward_epochs: int = _f(4, "passes over the labels per refit (the first fit runs 5x as many)")
    reward_batch_size: int = _f(32, "comparisons per reward-model gradient step")
    reward_min_steps: int = _f(50, "reward-model gradient steps per member per refit, at least")
    vocab_size: int = _f(512, "byte-level BPE vocabulary for the tiny model's tokenizer")
    n_layer: int = _f(2, "tiny model: transformer layers")
    n_embd: int = _f(64, "tiny model: width")
    n_head: int = _f(2, "tiny model: attention heads")
    sft_steps: int = _f(800, "supervised fine-tuning steps on the task's demonstrations (0 = none)")
    sft_lr: float = _f(1e-3, "SFT learning rate")
    sft_batch_size: int = _f(16, "demonstrations per SFT step")
    ppo_iterations: int = _f(40, "PPO iterations (each samples --rollout-prompts responses)")
    rollout_prompts: int = _f(64, "prompts sampled per PPO iteration, one response each")
    ppo_minibatch: int = _f(16, "responses per PPO minibatch")
    ppo_epochs: int = _f(4, "PPO epochs per rollout")
    ppo_lr: float = _f(1e-4, "PPO learning rate (policy and value); 1e-4 measured best for the tiny model")
    init_kl_coef: float = _f(0.02, "β of the per-token KL penalty to the SFT model (InstructGPT: 0.02)")
    target_kl: float = _f(0.0, "adaptive KL target in nats per response (Ziegler et al. 2019); 0 = fixed β")
    ptx_coef: float = _f(0.0, "weight of the pretraining-mix term on demonstrations (PPO-ptx); 0 = plain PPO")
    temperature: float = _f(1.0, "sampling temperature for candidates and PPO rollouts")
    refit_every: int = _f(5, "PPO iterations between label requests and reward refits")
    seed: int = _f(0, "seed for the task, model, sampling, the oracle and query selection")

    COMMAND = "prefrl lm train"
    POSITIVE = FeedbackConfig.POSITIVE + ("responses_per_prompt", "vocab_size", "n_layer", "n_embd", "n_head",
                                          "sft_batch_size", "ppo_iterations", "rollout_prompts", "ppo_minibatch",
                                          "ppo_epochs", "refit_every")
    NON_NEGATIVE = FeedbackConfig.NON_NEGATIVE + ("sft_steps", "init_kl_coef", "target_kl", "ptx_coef", "reward_l2")
    POSITIVE_REAL = FeedbackConfig.POSITIVE_REAL + ("sft_lr", "ppo_lr", "temperature", "label_horizon")

    def validate(self) -> LMConfig:
        if not self.task:
            raise UserError("no task given: pass --task NAME (arithmetic, length, chinese) or module:callable")
        super().validate()
        if self.labels <= 0 and not self.true_reward:
            raise UserError(f"--labels must be a positive number (got {self.labels})")
        if self.responses_per_prompt < 2:
            raise UserError(f"--responses-per-prompt must be at least 2 to make pairs (got {self.responses_per_prompt})")
        return self

    @property
    def env(self) -> str:
        """What the run directory and store are made for: ``lm:<task>``."""
        return "lm:" + self.task
