"""The reward model: an ensemble of small MLPs on (observation, action).

Christiano et al. 2017, §2.2.1 and A.1: each member is a 2-layer MLP with 64 hidden units
and leaky ReLUs; the ensemble has 3 members; each member's output is normalized to zero
mean and a fixed standard deviation before the members are averaged, because the
Bradley–Terry loss only pins reward differences down, not their offset or scale.

Episodes that end. A clip cut from an episode shorter than the clip is padded (see
:class:`prefrl.clips.Clip`); each member learns one scalar, the reward of a step after the
episode is over, from the labels like any other reward. The agent's reward is measured from
it: 0 means "as good as the episode being over", which is what PPO assumes of every step
after a termination. So falling (Hopper-v5) costs what the labels say it costs. Without
this, a reward normalized to zero mean makes ending an episode free, the termination leak
of §3.1 and A.1. Until some label has compared a clip that ended, the episode-over reward
is each member's mean reward, and the agent's reward is the paper's zero-mean one.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

LEAKY_SLOPE = 0.01


class RewardNet(nn.Module):
    """One member: r̂(o, a) from inputs standardized with the ensemble's input statistics."""

    def __init__(self, in_dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.LeakyReLU(LEAKY_SLOPE),
            nn.Linear(hidden, hidden), nn.LeakyReLU(LEAKY_SLOPE),
            nn.Linear(hidden, 1))
        self.end_reward = nn.Parameter(torch.zeros(()))  # raw reward after the episode ended (module doc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., in_dim]`` → rewards ``[...]``."""
        return self.net(x).squeeze(-1)


class RewardEnsemble(nn.Module):
    """M reward members over (obs, act) with shared input and per-member output normalization.

    Args:
        obs_dim: flattened observation size.
        act_dim: action size (one-hot size for discrete actions).
        members: ensemble size M (§2.2.1: 3).
        hidden: hidden units per layer (A.1: 64).
    """

    def __init__(self, obs_dim: int, act_dim: int, members: int = 3, hidden: int = 64):
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        in_dim = obs_dim + act_dim
        self.members = nn.ModuleList(RewardNet(in_dim, hidden) for _ in range(members))
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.register_buffer("out_mean", torch.zeros(members))
        self.register_buffer("out_std", torch.ones(members))
        self.register_buffer("ends_learned", torch.zeros((), dtype=torch.bool))  # set by the trainer
        self._numpy_weights = None

    def __len__(self) -> int:
        return len(self.members)

    def _inputs(self, obs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        return (torch.cat([obs.float(), acts.float()], dim=-1) - self.in_mean) / self.in_std

    def member_rewards(self, m: int, obs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """Member ``m``'s raw reward: ``obs [..., obs_dim]``, ``acts [..., act_dim]`` → ``[...]``."""
        return self.members[m](self._inputs(obs, acts))

    def member_returns(self, m: int, obs: torch.Tensor, acts: torch.Tensor,
                       lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Member ``m``'s summed raw reward of clips ``obs [N, T, obs_dim]``, ``acts [N, T, act_dim]``
        with ``lengths [N]`` real steps each → ``[N]``."""
        return clip_sums(self.member_rewards(m, obs, acts), lengths, self.members[m].end_reward)

    def forward(self, obs: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """Raw (unnormalized) member rewards: ``obs [..., obs_dim]``, ``acts [..., act_dim]`` → ``[M, ...]``."""
        x = self._inputs(obs, acts)
        return torch.stack([m(x) for m in self.members])

    def set_input_stats(self, obs: np.ndarray, acts: np.ndarray) -> None:
        """Standardize inputs with statistics of experience ``obs [N, obs_dim]``, ``acts [N, act_dim]``."""
        x = np.concatenate([obs, acts], axis=-1)
        self.in_mean.copy_(torch.as_tensor(x.mean(0), dtype=torch.float32))
        self.in_std.copy_(torch.as_tensor(x.std(0) + 1e-6, dtype=torch.float32).clamp(min=1e-3))
        self._numpy_weights = None

    @torch.no_grad()
    def normalize(self, obs: np.ndarray, acts: np.ndarray) -> None:
        """Set each member's output offset and scale so that on this experience it has mean 0, std 1."""
        raw = self(torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(acts, dtype=torch.float32))
        self.out_mean.copy_(raw.mean(1))
        self.out_std.copy_(raw.std(1).clamp(min=1e-6))
        set_unlearned_ends(self)
        self._numpy_weights = None

    @torch.no_grad()
    def clip_returns(self, obs: np.ndarray, acts: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """Each member's summed raw reward of clips ``obs [N, T, obs_dim]``, ``acts [N, T, act_dim]``
        with ``lengths [N]`` real steps each (default: all) → ``[M, N]``."""
        raw = self(torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(acts, dtype=torch.float32))
        return clip_sums(raw, _tensor(lengths), end_rewards(self)[:, None, None]).numpy()

    def predict(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        """The reward the agent sees: mean over members of normalized rewards, ``[B, ·]`` → ``[B]``.

        Each member's reward is measured from its episode-over reward (see the module doc)
        and divided by its std on recent experience.

        Runs on every rollout, so it uses a NumPy copy of the weights (refreshed after each
        change), the input standardization folded into the first layer, the members' first
        layers side by side in one matrix, their middle layers stacked, and the output
        normalization and mean folded into the last layer: a few matrix products, where
        torch's per-call overhead would dominate.
        """
        if self._numpy_weights is None:
            self._numpy_weights = self._export()
        (w_in, b_in), *hidden, (w_out, b_out) = self._numpy_weights
        h = np.concatenate([obs, acts], axis=-1, dtype=np.float32) @ w_in + b_in  # [B, M·H]
        h = np.maximum(h, LEAKY_SLOPE * h).reshape(len(h), len(self), -1).transpose(1, 0, 2)  # [M, B, H]
        for w, b in hidden:  # [M, H, H], [M, 1, H]
            h = h @ w + b
            h = np.maximum(h, LEAKY_SLOPE * h)
        return h.transpose(1, 0, 2).reshape(len(h[0]), -1) @ w_out + b_out

    def _export(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The agent's reward as one MLP on raw inputs: ``[(w, b), ...]``.

        First layer ``[in, M·H]``: members' weights side by side, with ``(x − in_mean) / in_std``
        folded in. Middle layers ``[M, H, H]``: one matrix per member. Last layer ``[M·H]``:
        ``mean_m((r_m − zero_m) / std_m)`` folded in.
        """
        linears = [[m for m in member.net if isinstance(m, nn.Linear)] for member in self.members]
        weights = [np.stack([lin[d].weight.detach().double().numpy().T for lin in linears])
                   for d in range(len(linears[0]))]  # [M, in, out] per depth
        biases = [np.stack([lin[d].bias.detach().double().numpy() for lin in linears]) for d in range(len(linears[0]))]
        in_mean, in_std = self.in_mean.double().numpy(), self.in_std.double().numpy()
        w = np.concatenate(weights[0], axis=1)  # [in, M·H]
        layers = [(w / in_std[:, None], np.concatenate(biases[0]) - (in_mean / in_std) @ w)]
        layers += [(w, b[:, None]) for w, b in zip(weights[1:-1], biases[1:-1])]
        scale = 1.0 / (self.out_std.double().numpy() * len(self))  # [M]
        w_out = (weights[-1][..., 0] * scale[:, None]).reshape(-1)  # [M·H]
        layers.append((w_out, (biases[-1][:, 0] - end_rewards(self).double().numpy()) @ scale))
        return [(w.astype(np.float32), np.asarray(b, np.float32)) for w, b in layers]

    def invalidate(self) -> None:
        """Call after changing weights in place (the trainer does), so `predict` re-exports them."""
        self._numpy_weights = None


@torch.no_grad()
def end_rewards(ensemble: nn.Module) -> torch.Tensor:
    """``[M]``: each member's raw reward of a step after its episode ended (its zero for the agent)."""
    return torch.stack([m.end_reward for m in ensemble.members]).detach()


@torch.no_grad()
def set_unlearned_ends(ensemble: nn.Module) -> None:
    """Until labels have taught what an ended episode is worth, it is worth each member's mean."""
    if not ensemble.ends_learned:
        for member, mean in zip(ensemble.members, ensemble.out_mean):
            member.end_reward.copy_(mean)


def clip_sums(rewards: torch.Tensor, lengths: torch.Tensor | None, end: torch.Tensor) -> torch.Tensor:
    """Clip returns: ``rewards [..., N, T]`` summed over the first ``lengths [N]`` steps of each
    clip, plus ``end`` (broadcast to ``rewards``) for every step after its episode ended."""
    if lengths is None:
        return rewards.sum(-1)
    over = torch.arange(rewards.shape[-1], device=rewards.device) >= lengths.to(rewards.device)[:, None]
    return torch.where(over, end, rewards).sum(-1)


def _tensor(lengths: np.ndarray | None) -> torch.Tensor | None:
    return None if lengths is None else torch.as_tensor(np.asarray(lengths), dtype=torch.int64)
