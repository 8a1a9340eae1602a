"""PPO for causal language models with a per-token KL penalty (InstructGPT's third stage).

Ouyang et al. 2022 (§3.5) optimise the SFT policy against the reward model with PPO
(Schulman et al. 2017), following Stiennon et al. 2020 and Ziegler et al. 2019: one
"episode" is a prompt and a sampled response, the reward model's scalar arrives at the
response's last token, and every token also pays ``-β·(log π(a_t|s_t) − log π_ref(a_t|s_t))``
so the policy stays near the SFT model π_ref, whose text the reward model was fitted on.
PPO-ptx (§3.5, eq. 2) adds ``γ·`` the language-modelling loss on other data (pretraining
text there; the task's demonstrations here) to keep the policy's other skills.

One :meth:`LMPPO.step` is, in order: sample a response per prompt → score them → per-token
log-probs of policy, reference and values → per-token rewards → GAE → ``ppo_epochs``
passes of clipped-surrogate and clipped-value minibatch updates → KL controller update.

Layouts. Sampling runs on left-padded prompts with a KV cache. Everything after runs on
the right-padded sequences ``encode_prompt(prompt) + response`` (positions then count from
0 without position ids, which :class:`prefrl.lm.reward.LMRewardMember` cannot take), and
per-token quantities are gathered into response-aligned ``[N, R]`` tensors: column ``j`` is
the j-th response token ``a_j`` (eos included, when sampled), read off the logits/values
at the position just before it; ``mask [N, R]`` is 1 up to and including the first eos.
"""
from __future__ import annotations

import copy
import inspect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from prefrl.errors import UserError
from prefrl.lm.model import context_size, encode_prompt
from prefrl.lm.reward import LMRewardMember

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

RewardFn = Callable[[list, list], Sequence[float]]
"""``reward_fn(prompts, responses) -> one float per response`` (responses decoded, no eos)."""


@dataclass
class PPOConfig:
    """PPO hyperparameters; defaults follow the papers named per field."""

    lr: float = 3e-4
    """Adam step size for policy and value. InstructGPT fine-tunes 1.3B–175B models at rates
    of order 1e-5 (App. C), but a 2-layer d=64 GPT-2 trained from scratch tolerates (and needs) larger
    steps; 3e-4 is the usual PPO default (Schulman et al. 2017's MuJoCo setting) and SFT
    here uses 1e-3–3e-3. Measured on tiny_gpt2 (64 prompts, 4 epochs × 4 minibatches):
    3e-4 clips ~10–20% of tokens per step (the healthy range) and takes a toy reward from
    0.19 to 0.95 in 12 iterations; 1e-4 clips ~4% and learns ~3× slower; 1e-3 clips 25–40%
    and spikes the KL to ~5 nats in one iteration."""
    rollout_prompts: int = 64
    """Prompts per iteration, one response each (what :meth:`LMPPO.sample_prompts` draws)."""
    minibatch: int = 16
    """Sequences per gradient step."""
    ppo_epochs: int = 4
    """Passes over each rollout (4 in Ziegler et al. 2019's released code)."""
    clip: float = 0.2
    """Surrogate ratio clip ε (Schulman et al. 2017; Ziegler et al. 2019)."""
    value_clip: float = 0.2
    """Value updates are clipped to ±this around the rollout's values (as in Ziegler et al.'s code)."""
    vf_coef: float = 0.5
    """Weight of the value loss. The value network is separate from the policy (InstructGPT
    initialises it from the RM), so under Adam this only matters relative to its grad clip."""
    gamma: float = 1.0
    """Discount: 1, as in InstructGPT/Ziegler et al.; episodes are a few dozen tokens."""
    lam: float = 0.95
    """GAE λ (Schulman et al. 2016; Ziegler et al. 2019)."""
    init_kl_coef: float = 0.02
    """β: InstructGPT's KL reward coefficient (Appendix C.4)."""
    target_kl: float | None = 6.0
    """Ziegler et al. 2019 §2.2 adaptive-β target (nats per sequence); None keeps β fixed."""
    kl_horizon: int = 10000
    """Adaptive-β horizon: K_β = n_steps / horizon per update (Ziegler et al.'s code)."""
    ptx_coef: float = 0.0
    """γ of PPO-ptx (InstructGPT §3.5 eq. 2) on the demonstrations; 0 = plain PPO."""
    temperature: float = 1.0
    """Sampling temperature; log-probs for KL and ratio use the same one."""
    whiten: bool = True
    """Normalise advantages to mean 0, std 1 over the rollout's response tokens."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip, applied to policy and value separately."""


class AdaptiveKLController:
    """Ziegler et al. 2019 §2.2: move β so the per-sequence KL tracks ``target``.

    ``e = clip(KL/target − 1, −0.2, 0.2)``, ``β ← β·(1 + K_β·e)`` with ``K_β = n_steps/horizon``:
    a proportional controller whose step per update is bounded by the 0.2 clip.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise UserError(f"target_kl={target}, kl_horizon={horizon}; both must be positive")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, kl: float, n_steps: int) -> None:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


class FixedKLController:
    """β stays at ``kl_coef`` (InstructGPT's choice)."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, kl: float, n_steps: int) -> None:
        pass


@dataclass(frozen=True)
class Rollout:
    """One iteration's samples. N sequences, T = longest prompt+response, R = longest response.

    ``input_ids``/``attention_mask [N, T]`` right-padded; ``index [N, R]`` the position whose
    logits/value belong to response token j; ``actions``/``mask [N, R]``; ``scores [N]``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    index: torch.Tensor
    actions: torch.Tensor
    mask: torch.Tensor
    scores: torch.Tensor


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def token_logprobs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   index: torch.Tensor, actions: torch.Tensor,
                   temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``log π(a_j | s_j)`` and the entropy of ``π(·|s_j)``, both ``[N, R]``, at ``temperature``."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    logits = logits.gather(1, index[..., None].expand(-1, -1, logits.size(-1))) / temperature
    logp_all = F.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(-1, actions[..., None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
        gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over ``[N, R]`` response tokens.

    The episode ends after the last masked-in token (the value there is 0). Returns
    ``(advantages, returns)``, zero outside ``mask``.
    """
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for j in reversed(range(rewards.size(1))):
        delta = rewards[:, j] + gamma * next_value - values[:, j]
        next_adv = (delta + gamma * lam * next_adv) * mask[:, j]
        advantages[:, j] = next_adv
        next_value = values[:, j] * mask[:, j]
    return advantages, (advantages + values) * mask


def ppo_losses(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
               values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, clip: float, value_clip: float
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped policy and value losses, token means over ``mask``; all inputs ``[N, R]``.

    Returns ``(policy_loss, value_loss, clipfrac)``. The policy term is Schulman et al. 2017
    eq. 7 as a loss (the pessimistic of the clipped and unclipped surrogates); the value
    term likewise takes the worse of the new value and one moved at most ``value_clip``
    from the rollout's, so neither network jumps far on one rollout.
    """
    ratio = torch.exp(logp - old_logp)
    pg = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip))
    v_clipped = old_values + (values - old_values).clamp(-value_clip, value_clip)
    vf = torch.max((values - returns) ** 2, (v_clipped - returns) ** 2)
    clipfrac = masked_mean(((ratio - 1).abs() > clip).float(), mask).detach()
    return masked_mean(pg, mask), 0.5 * masked_mean(vf, mask), clipfrac


def lm_loss(model: nn.Module, batch: Sequence[tuple[list[int], int]], pad: int) -> torch.Tensor:
    """Mean next-token loss of the response+eos tokens of ``(ids, n_prompt)`` rows (as in SFT)."""
    device = next(model.parameters()).device
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    target = torch.full((len(batch), width - 1), -100, dtype=torch.long)
    for b, (ids, n_prompt) in enumerate(batch):
        row = torch.tensor(ids)
        input_ids[b, :len(ids)] = row
        mask[b, :len(ids)] = 1
        target[b, n_prompt - 1:len(ids) - 1] = row[n_prompt:]
    logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                           target.to(device).reshape(-1), ignore_index=-100)


class LMPPO:
    """PPO on a causal LM ``policy`` (updated in place) against a sequence-level ``reward_fn``.

    Args:
        policy: the causal LM to optimise (InstructGPT starts it from the SFT model).
        tokenizer: its tokenizer (needs an eos token).
        cfg: hyperparameters.
        max_new_tokens: response length cap; a response that hits it without eos is scored
            as it stands.
        ref_model: frozen π_ref for the KL penalty; default a deep copy of ``policy`` as it is
            now. When resuming, pass the SFT model here: a copy of the resumed policy would
            measure KL from the wrong place.
        value_model: ``(input_ids, attention_mask) -> [B, T]`` values, optimised here; default
            a fresh scalar head on a copy of the policy's body. InstructGPT (§3.5) initialises
            it from the reward model, e.g. ``copy.deepcopy(reward_ensemble.members[0])``.
        demonstrations: ``(prompt, response)`` pairs for the ptx term.
        seed: seeds sampling, minibatch order and demo draws (a private generator).

    Dropout is off (``eval()``) while sampling and updating so that the ratio is exactly 1
    at the first minibatch; each model's train/eval mode is restored after a step.
    """

    def __init__(self, policy: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", cfg: PPOConfig,
                 max_new_tokens: int, ref_model: nn.Module | None = None,
                 value_model: nn.Module | None = None,
                 demonstrations: Sequence[tuple[str, str]] | None = None, seed: int = 0):
        from prefrl.lm.sft import encode_demonstrations

        if max_new_tokens < 1:
            raise UserError(f"max_new_tokens={max_new_tokens}; ask for at least 1")
        if not cfg.temperature > 0:
            raise UserError(f"temperature={cfg.temperature}; PPO samples, so use a positive temperature")
        if cfg.minibatch < 1 or cfg.ppo_epochs < 1:
            raise UserError(f"minibatch={cfg.minibatch}, ppo_epochs={cfg.ppo_epochs}; both must be at least 1")
        if tokenizer.eos_token_id is None:
            raise UserError("the tokenizer has no eos token; set tokenizer.eos_token before PPO")
        if cfg.ptx_coef > 0 and not demonstrations:
            raise UserError(f"ptx_coef={cfg.ptx_coef} needs demonstrations; pass them or set ptx_coef=0")
        self.policy, self.tokenizer, self.cfg = policy, tokenizer, cfg
        self.max_new_tokens = max_new_tokens
        self.n_ctx = context_size(policy)
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos
        self.device = next(policy.parameters()).device
        if ref_model is None:  # a caller's reference is only ever run under no_grad, not frozen
            ref_model = copy.deepcopy(policy).requires_grad_(False)
        self.ref_model = ref_model
        if value_model is None:
            value_model = LMRewardMember(copy.deepcopy(policy.base_model), policy.config.hidden_size, seed)
        self.value_model = value_model.to(self.device)
        policy_params = list(policy.parameters())
        value_params = list(self.value_model.parameters())
        if {id(p) for p in policy_params} & {id(p) for p in value_params}:
            raise UserError("value_model shares parameters with the policy; pass a separate "
                            "network, e.g. copy.deepcopy(reward_model)")
        # eps 1e-5 as in OpenAI baselines' PPO2 and SB3's PPO (Adam's default is 1e-8).
        self.optimizer = torch.optim.Adam([{"params": policy_params}, {"params": value_params}],
                                          lr=cfg.lr, eps=1e-5)
        self.kl_ctl = (FixedKLController(cfg.init_kl_coef) if cfg.target_kl is None else
                       AdaptiveKLController(cfg.init_kl_coef, cfg.target_kl, cfg.kl_horizon))
        self.demos = encode_demonstrations(tokenizer, demonstrations, self.n_ctx) if demonstrations else []
        self.generator = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ public API

    def sample_prompts(self, pool: Sequence[str]) -> list[str]:
        """``cfg.rollout_prompts`` prompts drawn uniformly with replacement from ``pool``."""
        if not pool:
            raise UserError("no prompts to sample from; give the task some prompts")
        idx = torch.randint(len(pool), (self.cfg.rollout_prompts,), generator=self.generator)
        return [pool[i] for i in idx.tolist()]

    def step(self, prompts: Sequence[str], reward_fn: RewardFn) -> dict:
        """One PPO iteration on ``prompts`` (one response each); returns its statistics.

        Stats: ``reward_mean``/``reward_std`` (reward_fn's scores), ``kl_mean`` (mean over
        sequences of Σ_t log π − log π_ref over response tokens, at sampling time),
        ``kl_coef`` (the β used), ``policy_loss``, ``value_loss``, ``entropy`` (per token),
        ``approx_kl`` and ``clipfrac`` (policy movement within the step),
        ``response_len_mean`` (tokens, eos included), ``eos_fraction``, ``ptx_loss``
        (nan without ptx), ``returns_mean``, ``value_mean``.
        """
        cfg = self.cfg
        encoded = self._encode(prompts)
        models = (self.policy, self.value_model, self.ref_model)
        modes = [m.training for m in models]
        for m in models:
            m.eval()
        try:
            resp_ids = self._sample(encoded)
            responses = [self.tokenizer.decode(r[:-1] if r[-1] == self.eos else r, skip_special_tokens=True)
                         for r in resp_ids]
            scores = [float(s) for s in reward_fn(list(prompts), responses)]
            if len(scores) != len(prompts) or not all(math.isfinite(s) for s in scores):
                raise UserError(f"reward_fn returned {len(scores)} scores for {len(prompts)} responses "
                                f"(or a non-finite one); return one finite float per response")
            batch = self._layout(encoded, resp_ids, torch.tensor(scores))
            beta = self.kl_ctl.value
            with torch.no_grad():
                logp, _ = self._logprobs(self.policy, batch)
                ref_logp, _ = self._logprobs(self.ref_model, batch)
                values = self._values(batch)
                kl = (logp - ref_logp) * batch.mask  # Ziegler et al. §2: the sampled log-ratio
                rewards = -beta * kl
                last = batch.mask.sum(1).long() - 1
                rewards[torch.arange(len(last)), last] += batch.scores
                advantages, returns = gae(rewards, values, batch.mask, cfg.gamma, cfg.lam)
                if cfg.whiten:
                    mean = masked_mean(advantages, batch.mask)
                    var = masked_mean((advantages - mean) ** 2, batch.mask)
                    advantages = (advantages - mean) * torch.rsqrt(var + 1e-8) * batch.mask
            stats = self._update(batch, logp, values, advantages, returns)
        finally:
            for m, mode in zip(models, modes):
                m.train(mode)
        kl_mean = kl.sum(1).mean().item()
        self.kl_ctl.update(kl_mean, n_steps=len(prompts))
        stats.update(
            reward_mean=batch.scores.mean().item(),
            reward_std=batch.scores.std().item() if len(scores) > 1 else 0.0,
            kl_mean=kl_mean, kl_coef=beta,
            response_len_mean=batch.mask.sum(1).mean().item(),
            eos_fraction=sum(r[-1] == self.eos for r in resp_ids) / len(resp_ids),
            returns_mean=masked_mean(returns, batch.mask).item(),
            value_mean=masked_mean(values, batch.mask).item(),
        )
        return stats

    @torch.no_grad()
    def kl_to_ref(self, prompts: Sequence[str]) -> float:
        """How far the policy has moved: mean over sampled responses of Σ_t log π − log π_ref."""
        encoded = self._encode(prompts)
        modes = [m.training for m in (self.policy, self.ref_model)]
        self.policy.eval(), self.ref_model.eval()
        try:
            batch = self._layout(encoded, self._sample(encoded), torch.zeros(len(encoded)))
            kl = (self._logprobs(self.policy, batch)[0] - self._logprobs(self.ref_model, batch)[0]) * batch.mask
        finally:
            self.policy.train(modes[0]), self.ref_model.train(modes[1])
        return kl.sum(1).mean().item()

    def state_dict(self) -> dict:
        """Optimizer, β, sampling RNG and the value model (which this object owns by default).

        The policy's weights are the caller's to save; the reference model is never changed.
        """
        return {"optimizer": self.optimizer.state_dict(), "kl_coef": self.kl_ctl.value,
                "rng": self.generator.get_state(), "value_model": self.value_model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_ctl.value = float(state["kl_coef"])
        self.generator.set_state(state["rng"])
        self.value_model.load_state_dict(state["value_model"])

    # ------------------------------------------------------------------ rollout

    def _encode(self, prompts: Sequence[str]) -> list[list[int]]:
        if not prompts:
            raise UserError("no prompts for this PPO step; pass at least one")
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        for i, ids in enumerate(encoded):
            if not ids:
                raise UserError(f"prompt {i} encodes to no tokens and the tokenizer has no bos; "
                                f"give it some text")
            if self.n_ctx is not None and len(ids) + self.max_new_tokens > self.n_ctx:
                raise UserError(
                    f"prompt {i} is {len(ids)} tokens; with max_new_tokens={self.max_new_tokens} that "
                    f"exceeds the model's context of {self.n_ctx} tokens; shorten the prompt or "
                    f"lower max_new_tokens")
        return encoded

    @torch.no_grad()
    def _sample(self, encoded: list[list[int]]) -> list[list[int]]:
        """Sample each prompt's response token ids (through the first eos) with a KV cache.

        Prompts are left-padded so every row's next token sits in the last column; position
        ids come from the attention mask so padding does not shift positions.
        """
        width = max(len(ids) for ids in encoded)
        input_ids = torch.tensor([[self.pad] * (width - len(ids)) + ids for ids in encoded], device=self.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=self.device)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        done = torch.zeros(len(encoded), dtype=torch.bool, device=self.device)
        # transformers 5 renamed past_key_values to cache (input and output); 4.x has the old name.
        cache_name = "cache" if "cache" in inspect.signature(self.policy.forward).parameters else "past_key_values"
        past, out = None, []
        for _ in range(self.max_new_tokens):
            result = self.policy(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                 use_cache=True, **{cache_name: past})
            past = getattr(result, cache_name)
            probs = torch.softmax(result.logits[:, -1].float() / self.cfg.temperature, dim=-1)
            token = torch.multinomial(probs.cpu(), 1, generator=self.generator).squeeze(1).to(self.device)
            token = torch.where(done, torch.full_like(token, self.pad), token)
            out.append(token)
            done |= token == self.eos
            if done.all():
                break
            input_ids = token[:, None]
            positions = positions[:, -1:] + 1
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        tokens = torch.stack(out, dim=1).tolist()
        responses = []
        for row in tokens:
            responses.append(row[:row.index(self.eos) + 1] if self.eos in row else row)
        return responses

    def _layout(self, encoded: list[list[int]], responses: list[list[int]], scores: torch.Tensor) -> Rollout:
        n, r_max = len(encoded), max(len(r) for r in responses)
        t_max = max(len(p) + len(r) for p, r in zip(encoded, responses))
        input_ids = torch.full((n, t_max), self.pad, dtype=torch.long)
        attn = torch.zeros((n, t_max), dtype=torch.long)
        index = torch.zeros((n, r_max), dtype=torch.long)
        actions = torch.full((n, r_max), self.pad, dtype=torch.long)
        mask = torch.zeros((n, r_max))
        for b, (p, r) in enumerate(zip(encoded, responses)):
            input_ids[b, :len(p) + len(r)] = torch.tensor(p + r)
            attn[b, :len(p) + len(r)] = 1
            # Token j of the response is predicted from position len(p)-1+j; padding columns
            # point at the last real position (masked out anyway).
            index[b] = (len(p) - 1 + torch.arange(r_max)).clamp(max=len(p) + len(r) - 2)
            actions[b, :len(r)] = torch.tensor(r)
            mask[b, :len(r)] = 1
        d = self.device
        return Rollout(input_ids.to(d), attn.to(d), index.to(d), actions.to(d), mask.to(d), scores.float().to(d))

    # ------------------------------------------------------------------ update

    def _logprobs(self, model: nn.Module, b: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        return token_logprobs(model, b.input_ids, b.attention_mask, b.index, b.actions, self.cfg.temperature)

    def _values(self, b: Rollout) -> torch.Tensor:
        return self.value_model(b.input_ids, b.attention_mask).gather(1, b.index).float()

    def _update(self, batch: Rollout, old_logp: torch.Tensor, old_values: torch.Tensor,
                advantages: torch.Tensor, returns: torch.Tensor) -> dict:
        cfg = self.cfg
        n = batch.input_ids.size(0)
        policy_params = self.optimizer.param_groups[0]["params"]
        value_params = self.optimizer.param_groups[1]["params"]
        logs: dict[str, list[float]] = {k: [] for k in
                                        ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "ptx_loss")}
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(n, generator=self.generator).to(self.device)
            for start in range(0, n, cfg.minibatch):
                rows = order[start:start + cfg.minibatch]
                mb = self._rows(batch, rows)
                mask = mb.mask
                logp, entropy = self._logprobs(self.policy, mb)
                values = self._values(mb)
                policy_loss, value_loss, clipfrac = ppo_losses(
                    logp, old_logp[rows], advantages[rows], values, old_values[rows], returns[rows],
                    mask, cfg.clip, cfg.value_clip)
                loss = policy_loss + cfg.vf_coef * value_loss
                if cfg.ptx_coef > 0:
                    idx = torch.randint(len(self.demos), (cfg.minibatch,), generator=self.generator).tolist()
                    ptx = lm_loss(self.policy, [self.demos[i] for i in idx], self.pad)
                    loss = loss + cfg.ptx_coef * ptx
                    logs["ptx_loss"].append(ptx.item())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy_params, cfg.max_grad_norm)
                torch.nn.utils.clip_grad_norm_(value_params, cfg.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    log_ratio = logp - old_logp[rows]
                    logs["policy_loss"].append(policy_loss.item())
                    logs["value_loss"].append(value_loss.item())
                    logs["entropy"].append(masked_mean(entropy, mask).item())
                    logs["approx_kl"].append(masked_mean(0.5 * log_ratio ** 2, mask).item())
                    logs["clipfrac"].append(clipfrac.item())
        return {k: (sum(v) / len(v) if v else float("nan")) for k, v in logs.items()}

    @staticmethod
    def _rows(batch: Rollout, rows: torch.Tensor) -> Rollout:
        """The minibatch ``rows``, cut to its longest sequence (causal: trailing pads change nothing)."""
        attn = batch.attention_mask[rows]
        width = int(attn.sum(1).max())
        return Rollout(batch.input_ids[rows, :width], attn[:, :width], batch.index[rows],
                       batch.actions[rows], batch.mask[rows], batch.scores[rows])


def demonstration_loss(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase",
                       demonstrations: Sequence[tuple[str, str]], batch_size: int = 64) -> float:
    """Mean per-token loss of ``model`` on the response+eos tokens of ``demonstrations``."""
    from prefrl.lm.sft import encode_demonstrations

    data = encode_demonstrations(tokenizer, demonstrations, context_size(model))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                chunk = data[start:start + batch_size]
                n_tokens = sum(len(ids) - n_prompt for ids, n_prompt in chunk)
                total += lm_loss(model, chunk, pad).item() * n_tokens
                count += n_tokens
    finally:
        model.train(was_training)
    return total / max(count, 1)
