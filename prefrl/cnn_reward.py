"""The reward model for Atari: an ensemble of small CNNs on (stacked frames, action).

Christiano et al. 2017, A.2: each member has 4 convolutional layers of 16 filters (7×7
stride 3, 5×5 stride 2, 3×3 stride 1, 3×3 stride 1) with leaky ReLUs (α = 0.01), batch norm
and dropout (p = 0.5) on every convolutional layer, then a fully connected layer of 64
units and a scalar output. §3.1.2: the score is blanked out of the frames it sees.

Same interface as :class:`prefrl.reward.RewardEnsemble` (episode-over reward included), so
:class:`prefrl.trainer.RewardTrainer` fits it unchanged; observations are frames
``[..., C, H, W]`` (uint8 or float, 0–255) instead of flat vectors.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import numpy as np
import torch
from torch import nn

from prefrl.reward import clip_sums, end_rewards, set_unlearned_ends

LEAKY_SLOPE = 0.01
DROPOUT = 0.5
CHUNK = 512  # frames per forward pass outside training, to bound memory on big batches

# (kernel, stride) of the four 16-filter convolutions (A.2).
CONVS = ((7, 3), (5, 2), (3, 1), (3, 1))


class CnnRewardNet(nn.Module):
    """One member: r̂(o, a) from frames scaled to [0, 1] and a one-hot action.

    Each convolution is followed by batch norm, a leaky ReLU and elementwise dropout
    (``nn.Dropout``, p = 0.5) — the order conv → BN → leaky ReLU → dropout, on all four
    layers as A.2 says. The flattened conv features and the one-hot action are then
    concatenated into the 64-unit fully connected layer (leaky ReLU), then one output.
    """

    def __init__(self, obs_shape: tuple[int, int, int], act_dim: int, filters: int = 16,
                 hidden: int = 64, dropout: float = DROPOUT):
        super().__init__()
        layers, channels = [], obs_shape[0]
        for kernel, stride in CONVS:
            layers += [nn.Conv2d(channels, filters, kernel, stride), nn.BatchNorm2d(filters),
                       nn.LeakyReLU(LEAKY_SLOPE), nn.Dropout(dropout)]
            channels = filters
        self.conv = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad(), _eval(self.conv):
            features = self.conv(torch.zeros(1, *obs_shape)).shape[1]  # 16·7·7 for 84×84
        self.head = nn.Sequential(nn.Linear(features + act_dim, hidden), nn.LeakyReLU(LEAKY_SLOPE),
                                  nn.Linear(hidden, 1))
        self.end_reward = nn.Parameter(torch.zeros(()))  # see prefrl.reward's module doc

    def forward(self, frames: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """``frames [B, C, H, W]`` in [0, 1], ``acts [B, act_dim]`` → rewards ``[B]``."""
        return self.head(torch.cat([self.conv(frames), acts], dim=-1)).squeeze(-1)


class CnnRewardEnsemble(nn.Module):
    """M CNN reward members over (frames, action) with per-member output normalization.

    Args:
        obs_shape: ``(C, H, W)`` of one observation (A.2: 4 stacked 84×84 frames).
        act_dim: one-hot action size.
        members: ensemble size M (§2.2.1: 3).
        blank: applied to the raw frames ``[B, C, H, W]`` (a tensor) before anything else,
            e.g. ``functools.partial(prefrl.atari.blank_score, game="Pong")``; inside the
            model, so that fitting and predicting both see the score blanked (§3.1.2).
        dropout: dropout probability on the conv layers (A.2: 0.5).
    """

    def __init__(self, obs_shape: tuple[int, ...] = (4, 84, 84), act_dim: int = 1, members: int = 3,
                 blank: Callable | None = None, dropout: float = DROPOUT):
        super().__init__()
        self.obs_shape, self.act_dim, self.blank = tuple(obs_shape), act_dim, blank
        self.members = nn.ModuleList(CnnRewardNet(self.obs_shape, act_dim, dropout=dropout)
                                     for _ in range(members))
        self.register_buffer("out_mean", torch.zeros(members))
        self.register_buffer("out_std", torch.ones(members))
        self.register_buffer("ends_learned", torch.zeros((), dtype=torch.bool))  # set by the trainer

    def __len__(self) -> int:
        return len(self.members)

    def _inputs(self, obs: torch.Tensor, acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """``obs [..., C, H, W]``, ``acts [..., act_dim]`` → frames ``[B, C, H, W]`` in [0, 1],
        acts ``[B, act_dim]`` and the leading dims ``...`` (to restore on the output)."""
        lead = obs.shape[:obs.dim() - len(self.obs_shape)]
        frames = obs.reshape(-1, *self.obs_shape)
        if self.blank is not None:
            frames = self.blank(frames)
        # Pixels to [0, 1] by a fixed scale: no input statistics needed (set_input_stats is a no-op).
        frames = frames.to(torch.float32) / 255.0
        return frames, acts.reshape(-1, self.act_dim).to(torch.float32), lead

    def member_rewards(self, m: int, obs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """Member ``m``'s raw reward: ``obs [..., C, H, W]``, ``acts [..., act_dim]`` → ``[...]``."""
        frames, a, lead = self._inputs(obs, acts)
        return self.members[m](frames, a).reshape(lead)

    def member_returns(self, m: int, obs: torch.Tensor, acts: torch.Tensor,
                       lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Member ``m``'s summed raw reward of clips ``obs [N, T, C, H, W]`` with ``lengths [N]`` real steps → ``[N]``."""
        return clip_sums(self.member_rewards(m, obs, acts), lengths, self.members[m].end_reward)

    def forward(self, obs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalized) member rewards: ``obs [..., C, H, W]``, ``acts [..., act_dim]`` → ``[M, ...]``."""
        frames, a, lead = self._inputs(obs, acts)
        return torch.stack([member(frames, a) for member in self.members]).reshape(len(self), *lead)

    @torch.no_grad()
    def _raw(self, obs, acts) -> torch.Tensor:
        """Eval-mode raw member rewards of NumPy/tensor inputs ``[N, ...]`` → ``[M, N, ...]``, in chunks."""
        obs, acts = torch.as_tensor(obs), torch.as_tensor(acts)
        per_item = int(np.prod(obs.shape[1:])) // int(np.prod(self.obs_shape))  # frames per leading item
        step = max(1, CHUNK // max(per_item, 1))
        with _eval(self):
            return torch.cat([self(obs[i:i + step], acts[i:i + step]) for i in range(0, len(obs), step)], dim=1)

    def set_input_stats(self, obs: np.ndarray, acts: np.ndarray) -> None:
        """No-op: pixels are scaled by 1/255 instead (kept for the RewardEnsemble interface)."""

    def normalize(self, obs: np.ndarray, acts: np.ndarray) -> None:
        """Set each member's output offset and scale so that on steps ``obs [N, C, H, W]``,
        ``acts [N, act_dim]`` it has mean 0, std 1 (eval mode: no dropout, BN running stats)."""
        raw = self._raw(obs, acts)
        self.out_mean.copy_(raw.mean(1))
        self.out_std.copy_(raw.std(1).clamp(min=1e-6))
        set_unlearned_ends(self)

    def clip_returns(self, obs: np.ndarray, acts: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """Each member's summed raw reward of clips ``obs [N, T, C, H, W]``, ``acts [N, T, act_dim]``
        with ``lengths [N]`` real steps each (default: all) → ``[M, N]``."""
        lengths = None if lengths is None else torch.as_tensor(np.asarray(lengths), dtype=torch.int64)
        return clip_sums(self._raw(obs, acts), lengths, end_rewards(self)[:, None, None]).numpy()

    def predict(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """The reward the agent sees: mean over members of normalized rewards, measured from the
        episode-over reward, ``obs [B, C, H, W]``, ``acts [B, act_dim]`` → ``[B]`` (eval mode)."""
        raw = self._raw(obs, acts)
        return ((raw - end_rewards(self)[:, None]) / self.out_std[:, None]).mean(0).numpy()

    def invalidate(self) -> None:
        """Nothing cached: `predict` runs the torch members directly (kept for the interface)."""


@contextmanager
def _eval(module: nn.Module):
    """Eval mode for the duration (dropout off, BN on running stats), then each submodule's mode restored."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
