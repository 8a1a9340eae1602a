"""The preference loop for language models, read top to bottom by `train_lm`.

InstructGPT (Ouyang et al. 2022, §3.5) in three stages: fine-tune on demonstrations (SFT),
fit a reward model to comparisons of the SFT model's samples, then optimise the policy
against it with PPO and a per-token KL penalty to the SFT model. Here the second and third
stages interleave as in Christiano et al. 2017 (§2.2): a share of the budget is asked
about SFT samples before PPO starts, the rest while the policy moves, always about the
responses the current policy writes. The queries, answers and reward fits are the control
side's own code (:class:`prefrl.feedback.Feedback`); only how candidate pairs are made (K
responses per prompt, every pair of them a candidate) and how the policy improves (LM PPO)
differ.
"""
from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import time
from dataclasses import asdict, replace
from itertools import combinations
from pathlib import Path

import numpy as np
import torch

from prefrl import rundir
from prefrl.display import require_display
from prefrl.errors import UserError
from prefrl.feedback import Feedback
from prefrl.lm.clips import prompt_length, text_clip
from prefrl.lm.config import LMConfig
from prefrl.oracles import make_oracle
from prefrl.schedule import labels_due
from prefrl.selectors import SELECTORS
from prefrl.trainer import RewardTrainer

SFT_DIR = "sft"
"""``RUN_DIR/sft``: the SFT model and tokenizer (``save_pretrained``), PPO's reference."""
POLICY_DIR = "policy"
"""``RUN_DIR/policy``: the final policy and tokenizer (``save_pretrained``)."""
FIRST_FIT_EPOCHS = 5  # the first fit sees only SFT samples; fit them longer, as the control side does
RECENT_CLIPS = 2048  # the latest candidates: what the reward is normalized over
EVAL_SAMPLES = 4  # sampled responses per held-out prompt when measuring the gold score


def train_lm(cfg: LMConfig, resume: bool = False, progress: bool = True) -> dict:
    """Run SFT, then reward learning and PPO side by side; return the summary also in ``summary.json``."""
    run = LMRun(cfg, resume)  # checks every input before anything is written
    from tqdm import tqdm
    bar = tqdm(total=cfg.ppo_iterations, initial=run.iteration, unit="iter", disable=not progress or None)
    while run.iteration < cfg.ppo_iterations:
        if (not cfg.true_reward and run.iteration % cfg.refit_every == 0
                and run.answered_iteration != run.iteration):
            run.ask_and_answer()  # labels due by the end of the coming block, about current samples
            run.fit_reward()
            run.answered_iteration = run.iteration
            run.save_checkpoint()
        run.wait_for_first_answers()
        prompts = run.prompt_batch()
        stats = run.ppo.step(prompts, run.reward)
        run.iteration += 1
        run.log_progress(stats)
        bar.update(1)
        if run.iteration % cfg.refit_every == 0:
            run.save_checkpoint()
    bar.close()
    return run.finish()


class LMRun:
    """Everything one language training process holds: task, models, store, oracle, PPO."""

    def __init__(self, cfg: LMConfig, resume: bool):
        from transformers.utils import logging as hf_logging

        from prefrl.lm.model import load_causal_lm
        from prefrl.lm.tasks import load_task

        hf_logging.set_verbosity_error()  # our stdout/stderr carry the run's own progress and summary
        hf_logging.disable_progress_bar()

        self.cfg, self.dir = cfg, Path(cfg.run_dir)
        torch.set_num_threads(1)  # tiny models: extra threads only contend (2-core machines)
        torch.manual_seed(cfg.seed)
        saved = rundir.check_new_or_resume(self.dir, cfg.env, resume)
        self.task = load_task(cfg.task, seed=cfg.seed)
        if cfg.selector not in SELECTORS:
            raise UserError(f"unknown selector '{cfg.selector}': use one of {', '.join(SELECTORS)}")
        self.human = cfg.oracle == "human" and not cfg.true_reward
        if not self.human and self.task.score is None:
            raise UserError(f"task {cfg.task!r} has no gold scorer for a synthetic oracle or --true-reward: "
                            f"use --oracle human")
        if cfg.oracle == "backflip":
            raise UserError("the backflip judge scores Hopper clips, not text: use --oracle perfect or a B-Pref teacher")
        self.oracle = None if self.human or cfg.true_reward else make_oracle(
            cfg.oracle, seed=cfg.seed, beta=cfg.oracle_beta, gamma=cfg.oracle_gamma, eps=cfg.oracle_eps,
            skip=cfg.oracle_skip, equal=cfg.oracle_equal)
        if self.human and not cfg.no_window:
            require_display("no display for the labeling window: run under Xvfb (xvfb-run -a prefrl ...), pass "
                            "--no-window and label with `prefrl lm label RUN_DIR --terminal`, or use a synthetic --oracle")
        sft_dir = self.dir / SFT_DIR
        self.sft_stats = None
        if (sft_dir / "config.json").exists():  # resuming: the reference model is the one fine-tuned then
            base, tokenizer = load_causal_lm(sft_dir)
            self.sft_stats = json.loads((sft_dir / "sft.json").read_text())
        elif cfg.model:
            base, tokenizer = load_causal_lm(cfg.model)  # a bad path fails here, before anything is written
        else:
            base, tokenizer = self._tiny_model()
        self.max_len = self._check_lengths(base, tokenizer)
        # Nothing has been written so far; from here on we create and open files.
        self._lock, self.store = rundir.open_store(self.dir, cfg.env, None if saved else {**asdict(cfg), "env": cfg.env})
        self.started, self.wall_before = time.time(), 0.0
        self.heartbeat("fine-tuning on demonstrations")
        if self.sft_stats is None:
            self.sft_model, self.tokenizer, self.sft_stats = self._sft(base, tokenizer, sft_dir)
        else:
            self.sft_model, self.tokenizer = base, tokenizer
        self.sft_model.eval().requires_grad_(False)
        self.policy = copy.deepcopy(self.sft_model).train().requires_grad_(True)

        from prefrl.lm.reward import LMRewardEnsemble
        self.ensemble = LMRewardEnsemble(self.sft_model, cfg.ensemble_size, pad_id=self.tokenizer.pad_token_id)
        self.ensemble.eval().requires_grad_(True)  # its bodies are copies of the frozen SFT model
        self.trainer = RewardTrainer(self.ensemble, lr=cfg.reward_lr, batch_size=cfg.reward_batch_size,
                                     epochs=cfg.reward_epochs, min_steps=cfg.reward_min_steps,
                                     l2=cfg.reward_l2, seed=cfg.seed)
        self.rng = np.random.default_rng([cfg.seed, 1])
        self.feedback = Feedback(self.store, self.trainer, cfg.selector, self.oracle, self.rng, cfg.label_cap,
                                 group=_prompt_key if cfg.kwise else None,
                                 random_until_fitted=cfg.random_first_batch)
        self.iteration, self.fits, self.answered_iteration, self.samples = 0, 0, -1, 0
        self.recent: list = []
        self.last_fit, self.window, self.ppo = None, None, None
        checkpoint = rundir.latest_checkpoint(self.dir) if saved else None
        if checkpoint is not None:
            self._load(checkpoint)
        if self.human and not cfg.no_window:  # a separate process: neither waits on the other
            self.window = subprocess.Popen([sys.executable, "-m", "prefrl", "lm", "label", str(self.dir)],
                                           stdout=subprocess.DEVNULL)

    def _check_lengths(self, model, tokenizer) -> int:
        """Every prompt with a full response, and every demonstration, must fit the model's context.

        Returns the padded length of text clips. Checked before anything is written.
        """
        from prefrl.lm.model import context_size, encode_prompt

        task = self.task
        n_ctx = context_size(model) or 1024
        longest = max(len(encode_prompt(tokenizer, p)) for p in task.prompts + task.eval_prompts)
        if longest + task.max_response_tokens > n_ctx:
            raise UserError(f"task {self.cfg.task!r} has a prompt of {longest} tokens; with {task.max_response_tokens} "
                            f"response tokens that exceeds the model's context of {n_ctx}: shorten the prompts "
                            f"or use a model with more positions")
        demo = max(len(encode_prompt(tokenizer, p)) + len(tokenizer(r, add_special_tokens=False)["input_ids"]) + 1
                   for p, r in task.demonstrations)
        if demo > n_ctx:
            raise UserError(f"task {self.cfg.task!r} has a demonstration of {demo} tokens, more than the model's "
                            f"context of {n_ctx}: shorten it or use a model with more positions")
        return min(n_ctx, longest + 2 * task.max_response_tokens + 1)

    # ------------------------------------------------------------------ stage 1: SFT
    def _tiny_model(self):
        from prefrl.lm.model import tiny_gpt2
        from prefrl.lm.tokenizer import train_tokenizer

        cfg = self.cfg
        texts = [p + r for p, r in self.task.demonstrations] + self.task.prompts + self.task.eval_prompts
        tokenizer = train_tokenizer(texts, vocab_size=cfg.vocab_size)
        return tiny_gpt2(tokenizer, n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=cfg.n_head,
                         seed=cfg.seed), tokenizer

    def _sft(self, model, tokenizer, folder: Path):
        from prefrl.lm.sft import sft

        cfg = self.cfg
        stats = {"steps": 0}
        if cfg.sft_steps:
            stats = sft(model, tokenizer, self.task.demonstrations, cfg.sft_steps, batch_size=cfg.sft_batch_size,
                        lr=cfg.sft_lr, seed=cfg.seed)
        stats["gold_scores"] = self.gold_scores(model, tokenizer)
        tmp = folder.with_name(folder.name + ".tmp")  # a kill mid-save leaves no half model behind
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "sft.json").write_text(json.dumps(stats, indent=2))
        tmp.rename(folder)
        return model, tokenizer, stats

    def gold_scores(self, model=None, tokenizer=None) -> dict:
        """Mean gold score on the held-out prompts: of sampled responses (``EVAL_SAMPLES`` per prompt at
        the training temperature: the policy PPO optimises) and of greedy ones. Empty without a scorer."""
        from prefrl.lm.model import generate

        if self.task.score is None:
            return {}
        model, tokenizer = model or self.policy, tokenizer or self.tokenizer
        prompts = self.task.eval_prompts
        out = {}
        for name, repeat, sample in (("sampled", EVAL_SAMPLES, True), ("greedy", 1, False)):
            asked = [p for p in prompts for _ in range(repeat)]
            responses = generate(model, tokenizer, asked, self.task.max_response_tokens, do_sample=sample,
                                 temperature=self.cfg.temperature, seed=self.cfg.seed + 1)
            out[name] = float(np.mean([self.task.score(p, r) for p, r in zip(asked, responses)]))
        return out

    # ------------------------------------------------------------------ stage 2: comparisons
    def heartbeat(self, status: str = "training") -> None:
        rundir.heartbeat(self.store, status, self.cfg.labels)

    def ask_and_answer(self) -> None:
        cfg = self.cfg
        block = cfg.refit_every * cfg.rollout_prompts  # ask now what the coming PPO block should learn from
        total = cfg.ppo_iterations * cfg.rollout_prompts
        due = labels_due(min(total, self.iteration * cfg.rollout_prompts + block), cfg.labels, total,
                         cfg.initial_label_fraction, cfg.label_horizon)
        self.heartbeat("sampling candidates")
        self.feedback.ask_and_answer(due, self.candidates)
        self.heartbeat()

    def candidates(self, n: int) -> tuple[list, list]:
        """K responses to each of enough prompts for ``oversample·n`` pairs; every distinct pair is a candidate."""
        from prefrl.lm.model import generate

        cfg, k = self.cfg, self.cfg.responses_per_prompt
        n_prompts = math.ceil(cfg.oversample * n / math.comb(k, 2))
        prompts = [self.task.prompts[i] for i in self.rng.integers(len(self.task.prompts), size=n_prompts)]
        repeated = [p for p in prompts for _ in range(k)]
        responses = generate(self.policy, self.tokenizer, repeated, self.task.max_response_tokens,
                             temperature=cfg.temperature, seed=int(self.rng.integers(2**31)))
        clips = [self._clip(p, r) for p, r in zip(repeated, responses)]
        left, right = [], []
        for start in range(0, len(clips), k):
            for i, j in combinations(range(start, start + k), 2):
                if responses[i] != responses[j]:  # the same text twice tells nobody anything
                    left.append(clips[i])
                    right.append(clips[j])
        self.recent = (self.recent + clips)[-RECENT_CLIPS:]
        return left, right

    def _clip(self, prompt: str, response: str, gold: bool = True):
        score = self.task.score(prompt, response) if gold and self.task.score is not None else None
        try:
            return text_clip(self.tokenizer, prompt, response, score, self.max_len, task=self.task.name)
        except UserError:  # re-tokenized text can exceed what was sampled: keep the clip's shape
            ids = self.tokenizer(response, add_special_tokens=False)["input_ids"]
            keep = self.max_len - len(self.tokenizer(prompt)["input_ids"]) - 2
            return text_clip(self.tokenizer, prompt, self.tokenizer.decode(ids[:max(keep, 0)]), score,
                             self.max_len, task=self.task.name)

    def fit_reward(self) -> None:
        epochs = self.cfg.reward_epochs * FIRST_FIT_EPOCHS if self.fits == 0 else None
        self.heartbeat("fitting the reward model")
        metrics = self.feedback.fit(epochs=epochs)
        self.heartbeat()
        if metrics is None:
            return
        if self.recent:  # InstructGPT §3.5: a bias so rewards have mean 0 on the policy's samples
            obs = np.stack([c.obs for c in self.recent])
            acts = np.stack([c.acts for c in self.recent])
            self.ensemble.normalize(obs, acts)
        self.fits += 1
        self.last_fit = metrics

    def wait_for_first_answers(self) -> None:
        """PPO on an unfitted reward model only drifts: with people answering, wait for their first answers.

        A synthetic oracle has answered already (if every answer was "can't tell" there is
        nothing to wait for), and ``--true-reward`` fits nothing.
        """
        while self.human and self.fits == 0:
            self.heartbeat("waiting for the first answers")
            time.sleep(1.0)
            self.fit_reward()

    # ------------------------------------------------------------------ stage 3: PPO
    def prompt_batch(self) -> list[str]:
        if self.ppo is None:
            self.ppo = self._make_ppo()
        idx = self.rng.integers(len(self.task.prompts), size=self.cfg.rollout_prompts)
        self.samples += self.cfg.rollout_prompts
        return [self.task.prompts[i] for i in idx]

    def _make_ppo(self):
        from prefrl.lm.ppo import LMPPO, PPOConfig

        cfg = self.cfg
        ppo_cfg = replace(PPOConfig(), lr=cfg.ppo_lr, rollout_prompts=cfg.rollout_prompts, minibatch=cfg.ppo_minibatch,
                          ppo_epochs=cfg.ppo_epochs, init_kl_coef=cfg.init_kl_coef,
                          target_kl=cfg.target_kl or None, ptx_coef=cfg.ptx_coef, temperature=cfg.temperature)
        # InstructGPT §3.5: the value function starts from the reward model.
        value = copy.deepcopy(self.ensemble.members[0]).train().requires_grad_(True)
        return LMPPO(self.policy, self.tokenizer, ppo_cfg, self.task.max_response_tokens, ref_model=self.sft_model,
                     value_model=value, demonstrations=self.task.demonstrations if cfg.ptx_coef else None,
                     seed=cfg.seed)

    def reward(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """What PPO maximises: the ensemble's normalized mean reward of each (prompt, response).

        With ``--true-reward``, the task's gold score itself: the baseline preferences are measured against.
        """
        self._rollout = (prompts, responses)
        if self.cfg.true_reward:
            return np.array([self.task.score(p, r) for p, r in zip(prompts, responses)], dtype=np.float32)
        clips = [self._clip(p, r, gold=False) for p, r in zip(prompts, responses)]
        return self.ensemble.predict(np.stack([c.obs for c in clips]), np.stack([c.acts for c in clips]))

    def log_progress(self, stats: dict) -> None:
        """Append a row to ``progress.csv``: learned reward, gold score and KL as PPO goes."""
        prompts, responses = self._rollout
        gold = (float(np.mean([self.task.score(p, r) for p, r in zip(prompts, responses)]))
                if self.task.score is not None else float("nan"))
        row = {"iteration": self.iteration, "responses": self.samples, "wall_seconds": round(self.wall_seconds(), 2),
               "reward_mean": stats["reward_mean"], "gold_mean": gold, "kl_mean": stats["kl_mean"],
               "kl_coef": stats["kl_coef"], "answers": self.store.num_answers(),
               "reward_val_accuracy": self.last_fit.val_accuracy if self.last_fit else float("nan")}
        rundir.append_progress(self.dir, row)

    # ------------------------------------------------------------------ checkpoints and the end
    def save_checkpoint(self) -> None:
        def write(folder: Path) -> None:
            torch.save(self.policy.state_dict(), folder / "policy.pt")
            torch.save({"ensemble": self.ensemble.state_dict(), "trainer": self.trainer.state_dict(),
                        "oracle_rng": self.oracle.rng.bit_generator.state if self.oracle else None},
                       folder / "reward.pt")
            if self.ppo is not None:
                torch.save(self.ppo.state_dict(), folder / "ppo.pt")
            (folder / "state.json").write_text(json.dumps({
                "iteration": self.iteration, "fits": self.fits, "answered_iteration": self.answered_iteration,
                "samples": self.samples, "wall_seconds": self.wall_seconds(), "rng": self.rng.bit_generator.state}))

        rundir.save_checkpoint(self.dir, write)

    def _load(self, checkpoint: Path) -> None:
        state = json.loads((checkpoint / "state.json").read_text())
        self.iteration, self.fits = state["iteration"], state["fits"]
        self.answered_iteration, self.samples = state["answered_iteration"], state["samples"]
        self.wall_before = state["wall_seconds"]
        self.rng.bit_generator.state = state["rng"]
        self.policy.load_state_dict(torch.load(checkpoint / "policy.pt"))
        saved = torch.load(checkpoint / "reward.pt", weights_only=False)
        self.ensemble.load_state_dict(saved["ensemble"])
        self.trainer.load_state_dict(saved["trainer"])
        if self.oracle is not None and saved.get("oracle_rng"):
            self.oracle.rng.bit_generator.state = saved["oracle_rng"]
        if (checkpoint / "ppo.pt").exists():
            self.ppo = self._make_ppo()
            self.ppo.load_state_dict(torch.load(checkpoint / "ppo.pt", weights_only=False))

    def wall_seconds(self) -> float:
        return self.wall_before + time.time() - self.started

    def finish(self) -> dict:
        folder = self.dir / POLICY_DIR
        self.policy.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        kl = self.ppo.kl_to_ref(self.task.eval_prompts) if self.ppo is not None else 0.0
        sft_gold, final_gold = self.sft_stats.get("gold_scores", {}), self.gold_scores()
        summary = {"task": self.cfg.task, "mode": "true-reward" if self.cfg.true_reward else "preferences",
                   "oracle": None if self.cfg.true_reward else self.cfg.oracle,
                   "selector": self.cfg.selector, "labels": self.store.num_answers(),
                   "labels_trained": len(self.store.preferences()[2]),
                   "gold_score_sft": sft_gold.get("sampled"), "gold_score_final": final_gold.get("sampled"),
                   "gold_score_sft_greedy": sft_gold.get("greedy"), "gold_score_final_greedy": final_gold.get("greedy"),
                   "kl_final": kl, "ppo_iterations": self.iteration, "responses_sampled": self.samples,
                   "reward_val_accuracy": self.last_fit.val_accuracy if self.last_fit else None,
                   "eval_prompts": len(self.task.eval_prompts), "wall_seconds": self.wall_seconds(),
                   "seed": self.cfg.seed}
        rundir.finish(self.dir, self.store, self.window, summary, self.cfg.labels)
        return summary


def _prompt_key(clip) -> bytes:
    """Which prompt a text clip answers: its prompt token ids (K-wise grouping)."""
    return clip.obs[:prompt_length(clip)].tobytes()
