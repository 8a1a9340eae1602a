"""Where experience meets preferences, whatever the domain: ask, answer, fit.

Christiano et al. 2017 (§2.2) run three processes side by side: the policy makes
trajectories, a labeler compares pairs of clips, and the reward model is fitted to the
comparisons. Only the first differs between worlds: a MuJoCo agent cuts clips from its
rollouts, a language model samples K responses per prompt. Everything after "here are
candidate pairs" is this class, shared by :mod:`prefrl.loop` and :mod:`prefrl.lm.loop`:

- the selector asks the most disputed of the candidates (§2.3),
- a synthetic oracle answers pending queries into the store (a person answers in a
  labeling window instead, at their own pace),
- the ensemble is refitted on every answer in the store with the Bradley–Terry trainer.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from prefrl.clips import Clip, Label
from prefrl.selectors import select
from prefrl.store import PreferenceStore
from prefrl.trainer import FitMetrics, RewardTrainer

Candidates = Callable[[int], tuple[list[Clip], list[Clip]]]
"""``candidates(n)`` → ``(lefts, rights)``: candidate pairs (about ``oversample·n``) for ``n`` queries."""


class Feedback:
    """The preference half of a run: store, selector, oracle and reward trainer.

    Args:
        store: the run's preference store (the single source of truth on resume).
        trainer: fits ``trainer.ensemble``; the ensemble scores candidates for the selector.
        selector: ``disagreement``, ``entropy`` or ``random``.
        oracle: a synthetic labeler (:mod:`prefrl.oracles`) or ``None`` when people answer.
        rng: drives query selection (saved in checkpoints by the caller).
        label_cap: fit on the newest N answers only; 0 = all (A.2 kept the last 3000).
        group: optional ``clip → key``; pairs whose left clips share a key are one batch
            element in the fit (InstructGPT's K-wise grouping, see :meth:`RewardTrainer.fit`).
        random_until_fitted: pick queries at random while the ensemble has never been
            fitted: members that have seen no answer disagree only by their initialisation.
    """

    def __init__(self, store: PreferenceStore, trainer: RewardTrainer, selector: str, oracle,
                 rng: np.random.Generator, label_cap: int = 0, group: Callable[[Clip], object] | None = None,
                 random_until_fitted: bool = False):
        self.store, self.trainer, self.selector, self.oracle = store, trainer, selector, oracle
        self.random_until_fitted = random_until_fitted
        self.ensemble, self.rng, self.label_cap, self.group = trainer.ensemble, rng, label_cap, group
        self.answers_fitted = -1

    def ask_and_answer(self, due: int, candidates: Candidates) -> None:
        """Make queries up to the schedule's count ``due``; a synthetic oracle answers all pending ones.

        Queries already asked and not yet answered count toward ``due``: people answer in
        their own windows at their own pace and the agent does not wait for them.
        """
        new = due - self.store.num_answers() - len(self.store.pending_queries())
        if new > 0:
            self.ask(*candidates(new), n=new)
        if self.oracle is None:
            return
        pending = self.store.pending_queries()
        if not pending:
            return
        left = [self.store.get_clip(q.left_id) for q in pending]
        right = [self.store.get_clip(q.right_id) for q in pending]
        for query, answer in zip(pending, self.oracle(left, right)):
            self.store.record(Label(query.id, answer, source=f"oracle:{self.oracle.name}", labeler="oracle"))

    def ask(self, left: list[Clip], right: list[Clip], n: int) -> None:
        """§2.3: of the candidate pairs ``(left[i], right[i])``, store the ``n`` most disputed as queries."""
        if not left:
            return
        returns_left = self.ensemble.clip_returns(*stack(left))
        returns_right = self.ensemble.clip_returns(*stack(right))
        selector = self.selector
        if self.random_until_fitted and self.store.num_answers() == 0:
            selector = "random"
        picked, scores = select(selector, returns_left, returns_right, min(n, len(left)), self.rng)
        self.store.add_queries([(left[i], right[i]) for i in picked], scores.tolist())

    def fit(self, epochs: int | None = None, before: Callable[[], None] | None = None) -> FitMetrics | None:
        """Refit the ensemble on every answer in the store; ``None`` if nothing new to learn from.

        ``before()`` runs just ahead of the gradient steps (e.g. to fix input statistics on
        the first fit); ``epochs`` overrides the trainer's for this fit.
        """
        answers = self.store.num_answers()
        if answers == self.answers_fitted:
            return None
        self.answers_fitted = answers
        left, right, mu = self.store.preferences()
        if self.label_cap:  # A.2: the newest answers describe what the agent does now
            left, right, mu = left[-self.label_cap:], right[-self.label_cap:], mu[-self.label_cap:]
        if len(mu) == 0:
            return None
        groups = None
        if self.group is not None:
            keys: dict = {}
            groups = np.array([keys.setdefault(self.group(c), len(keys)) for c in left])
        if before is not None:
            before()
        (obs_l, acts_l, len_l), (obs_r, acts_r, len_r) = stack(left), stack(right)
        return self.trainer.fit(obs_l, acts_l, obs_r, acts_r, mu, epochs=epochs, groups=groups,
                                lengths_left=len_l, lengths_right=len_r)


def stack(clips: list[Clip]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clips → ``(obs [N, T, ...], acts [N, T, act_dim], lengths [N])``."""
    return np.stack([c.obs for c in clips]), np.stack([c.acts for c in clips]), np.array([c.length for c in clips])
