"""Which candidate pairs to ask about.

Christiano et al. 2017 (§2.3) sample many candidate pairs of clips (about 10x as many as
they need), let each member of the reward-model ensemble predict which clip is better, and
ask about the pairs on which the members disagree most. Each selector here scores
candidates from the members' predicted clip returns; :func:`select` keeps the top ``k``.

All selectors share one signature: ``returns_left`` and ``returns_right`` are float
``[M, N]`` arrays (M ensemble members, N candidate pairs), ``rng`` a numpy Generator, and
they return float ``[N]`` scores where higher means "more worth asking".
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from prefrl.errors import UserError


def preference_probs(returns_left: np.ndarray, returns_right: np.ndarray) -> np.ndarray:
    """Each member's P[left ≻ right] under the Bradley–Terry model of §2.2.

    Args:
        returns_left, returns_right: float ``[M, N]`` predicted clip returns.

    Returns:
        float ``[M, N]``, ``sigmoid(R_left - R_right)``, computed without overflow.
    """
    left = np.asarray(returns_left, dtype=np.float64)
    right = np.asarray(returns_right, dtype=np.float64)
    if left.shape != right.shape or left.ndim != 2:
        raise ValueError(f"expected two [M, N] arrays of the same shape, "
                         f"got {left.shape} and {right.shape}")
    # sigmoid(d) = exp(-log(1 + exp(-d))); logaddexp never overflows.
    return np.exp(-np.logaddexp(0.0, -(left - right)))


def disagreement(returns_left: np.ndarray, returns_right: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """``[N]`` variance across ensemble members of P[left ≻ right] (§2.3, the default)."""
    return preference_probs(returns_left, returns_right).var(axis=0)


def entropy(returns_left: np.ndarray, returns_right: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """``[N]`` binary entropy (nats) of the members' mean P[left ≻ right].

    Highest where the ensemble as a whole thinks the pair is a coin flip; B-Pref (Lee et
    al. 2021) benchmarks it alongside disagreement.
    """
    p = preference_probs(returns_left, returns_right).mean(axis=0)
    # 0 * log(0) is 0; clipping keeps the log finite without changing the limit.
    q = np.clip(p, 1e-12, 1.0 - 1e-12)
    return -(p * np.log(q) + (1.0 - p) * np.log1p(-q))


def random(returns_left: np.ndarray, returns_right: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    """``[N]`` uniform scores: choose pairs without looking at the model (a baseline)."""
    n = preference_probs(returns_left, returns_right).shape[1]
    return rng.random(n)


Selector = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]

SELECTORS: dict[str, Selector] = {
    "disagreement": disagreement,
    "entropy": entropy,
    "random": random,
}
"""Named selectors; ``disagreement`` is the default (§2.3)."""


def select(name: str, returns_left: np.ndarray, returns_right: np.ndarray, k: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` highest-scoring candidate pairs, best first, and their scores.

    Args:
        name: a key of :data:`SELECTORS`.
        returns_left, returns_right: float ``[M, N]`` predicted clip returns.
        k: how many pairs to ask about; ``k > N`` returns all ``N``.
        rng: breaks ties between equal scores at random (and drives ``random``), so
            that equal scores do not always favour the earliest candidates.

    Returns:
        ``(indices, scores)``: int ``[min(k, N)]`` indices into the N candidates and the
        float ``[min(k, N)]`` scores they were picked by.

    Raises:
        UserError: unknown selector name.
    """
    if name not in SELECTORS:
        raise UserError(f"unknown selector {name!r}; choose one of: {', '.join(SELECTORS)}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    scores = np.asarray(SELECTORS[name](returns_left, returns_right, rng), dtype=np.float64)
    # lexsort sorts by the last key first: score descending, then a random tie-breaker.
    order = np.lexsort((rng.random(len(scores)), -scores))[:k]
    return order, scores[order]
