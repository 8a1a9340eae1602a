"""Fitting the reward ensemble to preferences with the Bradley–Terry model.

Christiano et al. 2017, §2.2.3: P̂[σ¹ ≻ σ²] = exp Σr̂(σ¹) / (exp Σr̂(σ¹) + exp Σr̂(σ²)),
i.e. a logistic function of the difference of summed rewards, fitted by cross-entropy to
the labels (ties as 0.5/0.5). Three refinements from the same section:
  * a 10% chance that the labeler answers uniformly at random: P = 0.9·P̂ + 0.05;
  * each member fitted on its own bootstrap resample of the labels;
  * a fraction 1/e of the labels held out per member for validation, and an L2 penalty
    adapted so that validation loss stays between 1.1 and 1.5 times the training loss.

Members start each refit from their last weights. A member can get stuck there: with the
random-answer term the loss of a pair it orders wrongly with confidence is flat, so no
gradient brings it back. A member that ends a refit worse on its own training labels than
a 50/50 answer to every pair (loss above ln 2) starts over from fresh weights; a fresh fit
on the same labels does fit them (``benchmarks/results/member-restart/``). Only step rewards
trained from scratch (the MLP, the Atari CNN) start over, not a language model's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from prefrl.reward import RewardEnsemble

RANDOM_ANSWER = 0.1
VAL_FRACTION = 1 / math.e
VAL_TRAIN_RATIO = (1.1, 1.5)
STUCK_LOSS = math.log(2)  # a member's training loss above this: worse than answering 50/50 (module doc)
RESTART_EPOCHS = 5  # a restarted member gets this many times the refit's steps, like a first fit


def bradley_terry_loss(returns_left: torch.Tensor, returns_right: torch.Tensor, mu: torch.Tensor,
                       random_answer: float = RANDOM_ANSWER, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of labels ``mu [N]`` (P[left ≻ right]) under predicted clip returns ``[N]``.

    The mean over pairs, or with ``weights [N]`` the weighted sum divided by the weights'
    sum (a group of g pairs weighted 1/g each counts as one element, as in InstructGPT's
    K-wise loss). Written with log-sigmoids so large reward gaps stay finite.
    """
    diff = returns_left - returns_right
    if random_answer:
        p_left = (1 - random_answer) * torch.sigmoid(diff) + random_answer / 2
        log_left, log_right = torch.log(p_left), torch.log1p(-p_left)
    else:
        log_left, log_right = torch.nn.functional.logsigmoid(diff), torch.nn.functional.logsigmoid(-diff)
    losses = -(mu * log_left + (1 - mu) * log_right)
    if weights is None:
        return losses.mean()
    return (weights * losses).sum() / weights.sum()


@dataclass(frozen=True)
class FitMetrics:
    """What one :meth:`RewardTrainer.fit` achieved, averaged over members.

    ``val_accuracy`` counts only non-tie validation labels; NaN when there are none.
    ``ended_clips`` counts labeled clips whose episode ended before the clip did.
    """

    labels: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    l2: float
    steps: int
    ended_clips: int = 0
    restarts: int = 0


class RewardTrainer:
    """Fits a :class:`RewardEnsemble` to labeled clip pairs; keeps optimizers and L2 weights between fits.

    Args:
        ensemble: the model to train in place.
        lr: Adam learning rate.
        batch_size: clip pairs per gradient step.
        epochs: passes over each member's bootstrap sample per fit.
        min_steps: gradient steps per member per fit at least (few labels ≠ few steps). Members
            start each refit from the last one's weights, so a refit needs only enough steps
            to take in the new answers. Replayed on three 700-answer runs
            (``benchmarks/refit_floor.py``), 25 predicted the next answers nearly as well as
            100 (0.746 vs. 0.759; per run −0.07 to +0.04) at 40% of the CPU time.
        l2: initial L2 weight (then adapted per member).
        seed: fixes validation splits and bootstrap draws.
    """

    def __init__(self, ensemble: RewardEnsemble, lr: float = 1e-3, batch_size: int = 64,
                 epochs: int = 8, min_steps: int = 25, l2: float = 1e-4, seed: int = 0):
        self.ensemble, self.batch_size, self.epochs, self.seed = ensemble, batch_size, epochs, seed
        self.min_steps, self.lr, self.l2_init = min_steps, lr, l2
        self.optimizers = [torch.optim.Adam(m.parameters(), lr=lr) for m in ensemble.members]
        self.l2 = [l2] * len(ensemble)
        self.rng = np.random.default_rng(seed)

    def val_mask(self, member: int, n: int) -> np.ndarray:
        """Which of the first ``n`` labels member ``member`` holds out; stable as labels are added."""
        return np.random.default_rng([self.seed, member]).random(n) < VAL_FRACTION

    def fit(self, obs_left: np.ndarray, acts_left: np.ndarray, obs_right: np.ndarray,
            acts_right: np.ndarray, mu: np.ndarray, epochs: int | None = None,
            groups: np.ndarray | None = None, lengths_left: np.ndarray | None = None,
            lengths_right: np.ndarray | None = None) -> FitMetrics:
        """Train every member on labeled pairs.

        Args:
            obs_left, obs_right: ``[N, T, *obs_shape]`` clip observations (float32 vectors, or
                uint8 frames, kept as uint8 until a batch is drawn: 4·84·84 floats per step add up).
            acts_left, acts_right: float32 ``[N, T, act_dim]`` clip actions.
            mu: float32 ``[N]``, P[left ≻ right] per label (1, 0 or 0.5).
            epochs: overrides the trainer's epochs for this fit (e.g. a longer first fit); the
                step floor scales with it.
            groups: optional int ``[N]``, ids ``0..G-1`` numbered in order of first
                appearance. Pairs sharing an id form ONE element of the bootstrap, the
                validation split and each batch, each pair weighted by 1/(group size):
                InstructGPT (§3.5) keeps all comparisons of one prompt together because as
                separate shuffled examples they overfit. Without groups every pair is its own.
            lengths_left, lengths_right: int ``[N]`` real steps of each clip (default: all T);
                the steps after them count the ensemble's episode-over reward
                (:mod:`prefrl.reward`).
        """
        steps_per_clip = np.shape(acts_left)[1]
        lengths = [torch.as_tensor(np.full(len(mu), steps_per_clip) if x is None else np.asarray(x), dtype=torch.int64)
                   for x in (lengths_left, lengths_right)]
        tensors = [torch.as_tensor(np.asarray(obs_left)), torch.as_tensor(acts_left, dtype=torch.float32), lengths[0],
                   torch.as_tensor(np.asarray(obs_right)), torch.as_tensor(acts_right, dtype=torch.float32), lengths[1],
                   torch.as_tensor(mu, dtype=torch.float32)]
        ended = 0
        if hasattr(self.ensemble, "ends_learned"):  # ensembles of step rewards learn what ending is worth
            ended = int(sum((x < steps_per_clip).sum() for x in lengths))
            if ended:
                self.ensemble.ends_learned.fill_(True)
        units = _Units(len(mu), groups)
        n = units.count
        results, steps, restarts = [], 0, 0
        for m, member in enumerate(self.ensemble.members):
            val = self.val_mask(m, n)
            train_idx = np.flatnonzero(~val)
            if len(train_idx) == 0:
                train_idx, val = np.arange(n), np.zeros(n, bool)
            boot = self.rng.choice(train_idx, size=len(train_idx), replace=True)
            scale = (epochs or self.epochs) / self.epochs
            n_steps = max(round(self.min_steps * scale), (epochs or self.epochs) * math.ceil(len(boot) / self.batch_size))
            self._train(m, tensors, units, boot, n_steps)
            steps += n_steps
            result = self._evaluate(m, tensors, units, np.flatnonzero(~val), np.flatnonzero(val))
            if result[0] > STUCK_LOSS and hasattr(member, "end_reward"):  # step rewards from scratch, not a language model
                self._restart(m)
                self._train(m, tensors, units, boot, RESTART_EPOCHS * n_steps)
                steps, restarts = steps + RESTART_EPOCHS * n_steps, restarts + 1
                result = self._evaluate(m, tensors, units, np.flatnonzero(~val), np.flatnonzero(val))
            results.append(result)
        self.ensemble.eval()
        self.ensemble.invalidate()
        train, vloss, acc = (_nanmean([r[i] for r in results]) for i in range(3))
        return FitMetrics(labels=len(mu), train_loss=float(train), val_loss=float(vloss), val_accuracy=float(acc),
                          l2=float(np.mean(self.l2)), steps=steps, ended_clips=ended, restarts=restarts)

    def _train(self, m: int, tensors, units: _Units, boot: np.ndarray, n_steps: int) -> None:
        member = self.ensemble.members[m]
        member.train()  # dropout and batch norm (the Atari CNN) act only while fitting
        for _ in range(n_steps):
            batch = self.rng.choice(boot, size=min(self.batch_size, len(boot)), replace=False)
            loss = self._loss(m, tensors, units, batch) + self.l2[m] * _weight_norm(member)
            self.optimizers[m].zero_grad()
            loss.backward()
            self.optimizers[m].step()
        member.eval()

    def _restart(self, m: int) -> None:
        """Member ``m`` from fresh weights, optimizer and L2 weight (see the module doc)."""
        member = self.ensemble.members[m]
        for module in member.modules():
            if module is not member and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        with torch.no_grad():
            member.end_reward.zero_()
        self.optimizers[m] = torch.optim.Adam(member.parameters(), lr=self.lr)
        self.l2[m] = self.l2_init

    def _loss(self, m: int, tensors, units: _Units, chosen) -> torch.Tensor:
        r_left, r_right, mu, weights = self._returns(m, tensors, units, chosen)
        return bradley_terry_loss(r_left, r_right, mu, weights=weights)

    def _returns(self, m: int, tensors, units: _Units, chosen):
        """Member ``m``'s returns of the chosen units' left and right clips ``[N]``, their labels ``[N]``, pair weights."""
        idx, weights = units.pairs(chosen)
        obs_l, acts_l, len_l, obs_r, acts_r, len_r, mu = (t[idx] for t in tensors)
        return (self.ensemble.member_returns(m, obs_l, acts_l, len_l),
                self.ensemble.member_returns(m, obs_r, acts_r, len_r), mu, weights)

    @torch.no_grad()
    def _evaluate(self, m: int, tensors, units: _Units, train_units, val_units) -> tuple[float, float, float]:
        train_loss = self._loss(m, tensors, units, train_units).item()
        if len(val_units) == 0:
            return train_loss, math.nan, math.nan
        r_left, r_right, mu, weights = self._returns(m, tensors, units, val_units)  # once, for loss and accuracy
        val_loss = bradley_terry_loss(r_left, r_right, mu, weights=weights).item()
        # §2.2.3: keep validation loss 1.1–1.5× training loss by adapting the L2 weight.
        ratio = val_loss / max(train_loss, 1e-8)
        if ratio > VAL_TRAIN_RATIO[1]:
            self.l2[m] *= 1.5
        elif ratio < VAL_TRAIN_RATIO[0]:
            self.l2[m] /= 1.5
        decided, diff = mu != 0.5, r_left - r_right
        accuracy = ((diff[decided] > 0) == (mu[decided] > 0.5)).float().mean().item() if decided.any() else math.nan
        return train_loss, val_loss, accuracy

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.optimizers], "l2": list(self.l2),
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        for opt, s in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        self.l2 = list(state["l2"])
        self.rng.bit_generator.state = state["rng"]


class _Units:
    """What the trainer samples: single pairs, or groups of pairs (see ``groups`` in :meth:`RewardTrainer.fit`)."""

    def __init__(self, n_pairs: int, groups: np.ndarray | None):
        self.groups = None if groups is None else np.asarray(groups, dtype=np.int64)
        if self.groups is None:
            self.count = n_pairs
            return
        if len(self.groups) != n_pairs:
            raise ValueError(f"{len(self.groups)} group ids for {n_pairs} pairs")
        order = np.argsort(self.groups, kind="stable")
        self.count = int(self.groups.max()) + 1 if n_pairs else 0
        bounds = np.searchsorted(self.groups[order], np.arange(self.count + 1))
        self.members = [order[bounds[g]:bounds[g + 1]] for g in range(self.count)]

    def pairs(self, chosen) -> tuple[np.ndarray, torch.Tensor | None]:
        """Pair indices of the chosen units, and per-pair weights (``None``: all equal)."""
        chosen = np.asarray(chosen)
        if self.groups is None:
            return chosen, None
        parts = [self.members[u] for u in chosen]
        weights = np.concatenate([np.full(len(p), 1.0 / len(p)) for p in parts])
        return np.concatenate(parts), torch.as_tensor(weights, dtype=torch.float32)


def _nanmean(values: list[float]) -> float:
    """Mean of the values that are not NaN (NaN if none are: e.g. no decided validation labels)."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def _weight_norm(module: torch.nn.Module) -> torch.Tensor:
    """Squared norm of the weight matrices of linear and convolution layers only: L2 on the
    gains of layer/batch norms (also named ``weight``) would pull them toward zero."""
    linear = (torch.nn.Linear, torch.nn.Conv2d)
    return sum((m.weight ** 2).sum() for m in module.modules()
               if isinstance(m, linear) or type(m).__name__ == "Conv1D")  # GPT-2's linear layers
