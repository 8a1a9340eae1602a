"""Synthetic labelers: answer queries from the environment's true reward.

Christiano et al. 2017 (§3.1) replace the human with a "synthetic oracle" that prefers
whichever clip earned more true reward. B-Pref (Lee et al. 2021, "B-Pref: Benchmarking
Preference-Based RL", §3) models irrational humans as a handful of knobs on that oracle:
stochastic (Bradley–Terry with rationality ``beta``), myopic (discount ``gamma`` on early
steps), mistaken (flip with probability ``eps``), skipping (no answer when both clips are
bad) and equal (a tie when the clips are close). Every named oracle here is one setting
of :class:`SimulatedTeacher`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from prefrl.clips import Clip
from prefrl.errors import UserError

ORACLES: dict[str, dict] = {
    "perfect": {},
    "stochastic": {"beta": 1.0},
    "mistake": {"eps": 0.1},
    "myopic": {"gamma": 0.9},
    "skip": {"skip": 0.1},
    "equal": {"equal": 0.1},
}
"""Named teachers and how each departs from the perfect one (B-Pref's default values)."""


def _discounted_return(clip: Clip, gamma: float) -> float:
    """Return over the clip's real steps, step ``t`` weighted by ``gamma**(length-1-t)``.

    B-Pref's myopic teacher remembers the end of a clip best, so later steps weigh more.
    Padded steps (``t >= length``) are "the episode is over" and carry no reward.
    """
    rewards = np.asarray(clip.rewards[: clip.length], dtype=np.float64)
    if gamma == 1.0:
        return float(rewards.sum())
    weights = gamma ** np.arange(clip.length - 1, -1, -1, dtype=np.float64)
    return float(rewards @ weights)


class SimulatedTeacher:
    """B-Pref's simulated teacher; every named teacher is a setting of it.

    Args:
        beta: rationality; ``inf`` always picks the better clip, finite values answer
            "left" with probability ``sigmoid(beta * (R_left - R_right))``.
        gamma: myopia discount in ``(0, 1]``; 1 weighs all steps equally.
        eps: probability of flipping a left/right answer (a mistake).
        skip: answer "incomparable" when both clips' returns are below ``skip * scale``.
        equal: answer "equal" when the returns differ by less than ``equal * scale``.
        seed: seeds the teacher's own generator, so answers are reproducible.

    ``scale`` is the mean true return of all clips in one call: B-Pref sets its
    thresholds relative to the average segment return so that they mean the same thing
    across environments whose rewards differ in size.
    """

    name: str = "custom"

    def __init__(self, beta: float = math.inf, gamma: float = 1.0, eps: float = 0.0,
                 skip: float = 0.0, equal: float = 0.0, seed: int = 0):
        _check_params(beta=beta, gamma=gamma, eps=eps, skip=skip, equal=equal)
        self.beta, self.gamma, self.eps = float(beta), float(gamma), float(eps)
        self.skip, self.equal = float(skip), float(equal)
        self.rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return (f"SimulatedTeacher(name={self.name!r}, beta={self.beta}, gamma={self.gamma}, "
                f"eps={self.eps}, skip={self.skip}, equal={self.equal})")

    def __call__(self, left: Sequence[Clip], right: Sequence[Clip]) -> list[str]:
        """Answer a batch of queries: one of :data:`prefrl.clips.ANSWERS` per pair.

        ``left[i]`` and ``right[i]`` form pair ``i``; the steps follow B-Pref's order.
        """
        if len(left) != len(right):
            raise ValueError(f"{len(left)} left clips but {len(right)} right clips")
        n = len(left)
        if n == 0:
            return []
        # Undiscounted [N] returns: the thresholds are about how good the clips really are.
        true_l = np.array([c.true_return for c in left])
        true_r = np.array([c.true_return for c in right])
        scale = float(np.concatenate([true_l, true_r]).mean())
        # What the (possibly myopic) teacher perceives, [N].
        seen_l = np.array([_discounted_return(c, self.gamma) for c in left])
        seen_r = np.array([_discounted_return(c, self.gamma) for c in right])
        diff = seen_l - seen_r

        # B-Pref's order: skip, preference, mistake, tie. Skipping is decided first but
        # written last, so it overrides whatever the later steps made of those pairs.
        skipped = (np.maximum(true_l, true_r) < self.skip * scale if self.skip > 0
                   else np.zeros(n, dtype=bool))

        # The preference itself: rational, or Bradley–Terry with rationality beta (§3).
        if math.isinf(self.beta):
            answers = np.where(diff > 0, "left", np.where(diff < 0, "right", "equal"))
        else:
            p_left = _sigmoid(self.beta * diff)
            answers = np.where(self.rng.random(n) < p_left, "left", "right")
        answers = answers.astype(object)

        # Mistakes flip a side; an exact tie has no side to flip.
        if self.eps > 0:
            flip = self.rng.random(n) < self.eps
            to_right, to_left = flip & (answers == "left"), flip & (answers == "right")
            answers[to_right], answers[to_left] = "right", "left"

        # Close calls become ties. Like B-Pref, "close" is measured on true returns.
        if self.equal > 0:
            answers[np.abs(true_l - true_r) < self.equal * scale] = "equal"

        # Skipped queries (both clips bad) get no label but still cost budget.
        answers[skipped] = "incomparable"
        return [str(a) for a in answers]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large ``|x|``."""
    return np.exp(-np.logaddexp(0.0, -x))


_FLAGS = {name: f"--oracle-{name}" for name in ("beta", "gamma", "eps", "skip", "equal")}


def _check_params(*, beta: float, gamma: float, eps: float, skip: float, equal: float):
    """Raise :class:`UserError` naming the CLI flag of the first invalid parameter."""
    problems = [
        ("beta", beta, not beta > 0, "must be > 0 (use inf for a rational teacher)"),
        ("gamma", gamma, not 0 < gamma <= 1, "must be in (0, 1]"),
        ("eps", eps, not 0 <= eps <= 1, "must be in [0, 1]"),
        ("skip", skip, not skip >= 0, "must be >= 0"),
        ("equal", equal, not equal >= 0, "must be >= 0"),
    ]
    for name, value, bad, rule in problems:
        if bad:
            raise UserError(f"{_FLAGS[name]} {value} {rule}")


def make_oracle(name: str, seed: int = 0, **overrides) -> SimulatedTeacher:
    """Build the named teacher, with any parameter overridden (``None`` means "keep").

    Raises:
        UserError: unknown name, unknown parameter, or a parameter out of range.
    """
    if name == "backflip":  # a scripted judge of torso rotation (prefrl/HopperBackflip-v0)
        from prefrl.envs.backflip import BackflipJudge

        return BackflipJudge(seed=seed)
    if name not in ORACLES:
        raise UserError(f"unknown oracle {name!r}; choose one of: human, backflip, {', '.join(ORACLES)}")
    params = dict(ORACLES[name])
    for key, value in overrides.items():
        if key not in _FLAGS:
            raise UserError(f"unknown oracle parameter {key!r}; "
                            f"expected one of: {', '.join(_FLAGS)}")
        if value is not None:
            params[key] = value
    for key, value in params.items():
        try:
            params[key] = float(value)
        except (TypeError, ValueError):
            raise UserError(f"{_FLAGS[key]} {value!r} is not a number") from None
    teacher = SimulatedTeacher(**params, seed=seed)
    teacher.name = name
    return teacher
