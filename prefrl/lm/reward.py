"""The language reward model: an ensemble of SFT-initialised transformers with scalar heads.

InstructGPT (Ouyang et al. 2022, §3.5) starts the reward model from the SFT model with the
final unembedding layer removed, and trains it to output one scalar for a (prompt,
response). Here each ensemble member is a deep copy of the causal LM's transformer body
plus a ``hidden → 1`` linear head, and :class:`LMRewardEnsemble` matches the interface of
:class:`prefrl.reward.RewardEnsemble`, so :class:`prefrl.trainer.RewardTrainer` fits it
unchanged on text clips from :mod:`prefrl.lm.clips`: the clip's ``obs`` are token ids and
its ``acts`` a mask with a 1 at the last real token, so the per-position rewards summed
over T (what the trainer does) are the head's output at the end of the sequence.

Also :func:`kwise_loss`, InstructGPT's loss over all K-choose-2 comparisons of one prompt's
K ranked responses, which the pairwise trainer does not cover.

``transformers`` is not imported here: the base model is passed in.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from prefrl.trainer import bradley_terry_loss

if TYPE_CHECKING:
    from transformers import PreTrainedModel

CHUNK = 256
"""Clips per forward pass when scoring many at once (bounds activation memory)."""


class LMRewardMember(nn.Module):
    """One member: a transformer body and a scalar head on every position's hidden state.

    Args:
        body: the causal LM's body (e.g. ``GPT2Model``), taking ``input_ids`` and
            ``attention_mask`` and returning ``last_hidden_state [B, T, H]``.
        hidden: H.
        seed: seeds the head's initialisation without touching the global RNG.
    """

    def __init__(self, body: nn.Module, hidden: int, seed: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(hidden, 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # Stiennon et al. 2020 (whose reward model InstructGPT follows) draw the reward
            # head from N(0, 1/(d_model+1)): initial rewards of order 1 whatever the width.
            # Different seeds also make the members differ before training (their bodies
            # are identical copies of the SFT model).
            nn.init.normal_(self.head.weight, std=(hidden + 1) ** -0.5)
            nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``input_ids [B, T]`` int64, ``attention_mask [B, T]`` → per-position rewards ``[B, T]``."""
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden).squeeze(-1)


class LMRewardEnsemble(nn.Module):
    """M reward members over token ids, each initialised from the same (SFT) causal LM.

    Args:
        base_model: a ``transformers`` causal LM (e.g. from :func:`prefrl.lm.sft.sft`); it
            is copied, not modified.
        members: ensemble size M (Christiano et al. 2017 §2.2.1: 3).
        pad_id: the tokenizer's pad id; positions holding it are masked out of attention.

    Inputs everywhere are text clips' arrays: ``obs [..., T]`` int64 token ids right-padded
    with ``pad_id``, ``acts [..., T, 1]`` float mask, 1 where the reward is read.
    """

    def __init__(self, base_model: "PreTrainedModel", members: int = 3, pad_id: int | None = None):
        super().__init__()
        if pad_id is None:
            pad_id = getattr(base_model.config, "pad_token_id", None)
        if pad_id is None:
            raise ValueError("pad_id is needed to build the attention mask; pass tokenizer.pad_token_id")
        self.pad_id = int(pad_id)
        # InstructGPT §3.5: the RM is the SFT model with its unembedding replaced by a scalar
        # head. `base_model` is the body without the LM head (GPT2LMHeadModel.transformer).
        body = base_model.base_model
        hidden = base_model.config.hidden_size
        self.members = nn.ModuleList(
            LMRewardMember(copy.deepcopy(body), hidden, seed=m) for m in range(members))
        self.register_buffer("out_mean", torch.zeros(members))
        self.register_buffer("out_std", torch.ones(members))

    def __len__(self) -> int:
        return len(self.members)

    def _device(self) -> torch.device:
        return self.out_mean.device

    def member_rewards(self, m: int, obs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """Member ``m``'s masked per-position rewards: ``obs [..., T]``, ``acts [..., T, 1]`` → ``[..., T]``.

        Summing over T gives the reward at the position(s) ``acts`` marks: the last real
        token of a text clip.
        """
        obs = torch.as_tensor(obs).to(self._device(), torch.long)
        acts = torch.as_tensor(acts).to(self._device(), torch.float32)
        lead, steps = obs.shape[:-1], obs.shape[-1]
        ids = obs.reshape(-1, steps)
        mask = acts.reshape(-1, steps)
        real = ids != self.pad_id
        # Right padding + causal attention: trailing all-pad columns never influence real
        # positions, so cut them off (clips are padded to a shared max_len) and pad back.
        width = max(int(real.any(0).nonzero().max()) + 1, 1) if real.any() else 1
        out = self.members[m](ids[:, :width], real[:, :width].long()) * mask[:, :width]
        if width < steps:
            out = torch.cat([out, out.new_zeros(out.shape[0], steps - width)], dim=1)
        return out.reshape(*lead, steps)

    def member_returns(self, m: int, obs: torch.Tensor, acts: torch.Tensor,
                       lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Member ``m``'s sequence reward of clips ``obs [N, T]``, ``acts [N, T, 1]`` → ``[N]``.
        ``lengths`` is ignored: a text clip's reward is read at its eos, whatever follows it."""
        return self.member_rewards(m, obs, acts).sum(-1)

    def forward(self, obs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """Raw member rewards per position: ``obs [..., T]``, ``acts [..., T, 1]`` → ``[M, ..., T]``."""
        return torch.stack([self.member_rewards(m, obs, acts) for m in range(len(self))])

    def set_input_stats(self, obs: np.ndarray, acts: np.ndarray) -> None:
        """No-op: token ids are looked up in an embedding, not standardized."""

    @torch.no_grad()
    def clip_returns(self, obs: np.ndarray, acts: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """Each member's raw sequence reward of clips ``obs [N, T]``, ``acts [N, T, 1]`` → ``[M, N]``
        (``lengths`` ignored, as in :meth:`member_returns`)."""
        was_training = self.training
        self.eval()
        try:
            obs, acts = torch.as_tensor(np.asarray(obs)), torch.as_tensor(np.asarray(acts))
            parts = [self(obs[i:i + CHUNK], acts[i:i + CHUNK]).sum(-1)
                     for i in range(0, len(obs), CHUNK)]
        finally:
            self.train(was_training)
        if not parts:
            return np.zeros((len(self), 0), dtype=np.float32)
        return torch.cat(parts, dim=1).cpu().numpy()

    @torch.no_grad()
    def normalize(self, obs: np.ndarray, acts: np.ndarray) -> None:
        """Give each member's sequence reward mean 0 and std 1 over clips ``obs [N, T]``, ``acts [N, T, 1]``.

        The Bradley–Terry loss fixes only reward differences; InstructGPT (§3.5) likewise
        adds a bias so the reward model's outputs have mean 0 on reference data before RL.
        """
        raw = torch.as_tensor(self.clip_returns(obs, acts))
        self.out_mean.copy_(raw.mean(1).to(self.out_mean))
        std = raw.std(1) if raw.shape[1] > 1 else torch.ones(len(self))
        self.out_std.copy_(std.clamp(min=1e-6).to(self.out_std))

    def predict(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """The reward a policy sees: mean over members of normalized sequence rewards, ``[B, T]`` → ``[B]``."""
        raw = self.clip_returns(obs, acts)  # [M, B]
        mean, std = self.out_mean.cpu().numpy()[:, None], self.out_std.cpu().numpy()[:, None]
        return ((raw - mean) / std).mean(0)

    def invalidate(self) -> None:
        """No-op: :meth:`predict` reads the live weights (no cached copy to refresh)."""


def kwise_loss(rewards: torch.Tensor, preferences: torch.Tensor) -> torch.Tensor:
    """InstructGPT's reward-model loss over all C(K, 2) comparisons of each prompt (§3.5).

    Ouyang et al. show labelers K responses per prompt and train on every pair the ranking
    implies, but keep a prompt's pairs together as ONE batch element: taking them as
    separate, shuffled examples made the model overfit after one epoch, since each
    response then appears in K−1 gradient updates. So the loss is the mean over a prompt's
    pairs of ``−log σ(r_w − r_l)``, then the mean over prompts.

    Args:
        rewards: ``[B, K]`` reward of each of the K responses to each of B prompts.
        preferences: either
            - ranks, integer ``[B, K]``: lower is better (0 = best); equal ranks are a tie; or
            - a pairwise matrix, float ``[B, K, K]``: ``P[b, i, j]`` = P[response i ≻ response j]
              (1 = i wins, 0 = j wins, 0.5 = tie), NaN where the pair was not compared
              (e.g. fewer than K responses); only ``i < j`` entries are read.
            Ties train toward equal rewards with target 0.5, as ties do on the control side
            (Christiano et al. 2017 §2.2.3); with hard labels each pair's term is exactly
            ``−log σ(r_w − r_l)``.

    Returns:
        scalar: mean over prompts (those with at least one compared pair) of the mean
        pairwise loss of that prompt.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [B, K], got shape {tuple(rewards.shape)}")
    b, k = rewards.shape
    if preferences.dim() == 2:  # ranks → P[i ≻ j]: 1 if rank_i < rank_j, 0.5 on ties
        ranks = preferences.to(rewards.device).float()
        p = (ranks[:, :, None] < ranks[:, None, :]).float() + 0.5 * (ranks[:, :, None] == ranks[:, None, :]).float()
    elif preferences.dim() == 3:
        p = preferences.to(rewards.device, rewards.dtype)
    else:
        raise ValueError(f"preferences must be ranks [B, K] or a matrix [B, K, K], got {tuple(preferences.shape)}")
    if p.shape != (b, k, k):
        raise ValueError(f"preferences shape {tuple(preferences.shape)} does not match rewards {tuple(rewards.shape)}")
    upper = torch.ones(k, k, dtype=torch.bool, device=rewards.device).triu(1)  # each pair once
    compared = upper & ~torch.isnan(p)  # [B, K, K]
    if not compared.any():
        raise ValueError("no compared pairs in this batch")
    prompt, i, j = compared.nonzero(as_tuple=True)
    pairs = compared.sum((1, 2))  # [B]
    # The control side's Bradley–Terry loss with each prompt's pairs weighted 1/(its pair
    # count): one batch element per prompt. No random-answer term: InstructGPT has none.
    return bradley_terry_loss(rewards[prompt, i], rewards[prompt, j], p[prompt, i, j], random_answer=0.0,
                              weights=1.0 / pairs[prompt].to(rewards.dtype))
