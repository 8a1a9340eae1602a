"""How many labels should have been asked for by agent timestep t.

Christiano et al. 2017, A.1/A.2: a share of the budget is collected up front from the
initial policy (25% for MuJoCo; Atari asks 500 labels first), after which labels arrive
at a rate proportional to h/(T+h), with h = 2·10⁶ for MuJoCo and 5·10⁶ for Atari. We
integrate that rate and scale it so the whole budget is spent exactly at the last step.

For gymnasium envs h defaults to a fifth of the run's timesteps rather than a fixed 2·10⁶.
Over a 1M-step run, 2·10⁶ barely anneals: the labels after the initial share arrive almost
evenly, and the reward the agent learns from in its first few hundred thousand steps rests
on few answers about what it now does. With h = 2·10⁵, 39% of those labels are in by a fifth
of the run instead of 24%. Measured on Hopper-v5 (``benchmarks/results/label-horizon/``):
the final learned reward, held fixed, trains a fresh agent better than the true reward does,
while one fitted on the initial 175 answers trains it far worse. Front-loading the labels
made the reward good ~130k steps sooner and the training curve followed, on one seed; the
final evaluation of that seed did not improve.
"""
from __future__ import annotations

import math


def labels_due(t: int, total: int, timesteps: int, initial_fraction: float = 0.25,
               horizon: float = 2e6, initial: int | None = None) -> int:
    """Labels that should exist after ``t`` of ``timesteps`` agent steps; never more than ``total``.

    ``initial`` (a count, e.g. Atari's 500) replaces ``initial_fraction`` when given.

    >>> labels_due(0, 700, 1_000_000)
    175
    >>> labels_due(1_000_000, 700, 1_000_000)
    700
    >>> labels_due(0, 3300, 10_000_000, initial=500, horizon=5e6)
    500
    """
    initial = min(total, initial) if initial is not None else round(total * initial_fraction)
    if timesteps <= 0 or t >= timesteps:
        return total
    share = math.log1p(max(t, 0) / horizon) / math.log1p(timesteps / horizon)
    return min(total, initial + math.floor((total - initial) * share))
