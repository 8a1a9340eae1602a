"""How many labels should have been asked for by agent timestep t.

Christiano et al. 2017, A.1/A.2: a share of the budget is collected up front from the
initial policy (25% for MuJoCo; Atari asks 500 labels first), after which labels arrive
at a rate proportional to h/(T+h), with h = 2·10⁶ for MuJoCo and 5·10⁶ for Atari. We
integrate that rate and scale it so the whole budget is spent exactly at the last step.

With a 1M-step budget, h = 2·10⁶ barely anneals: the labels after the initial share arrive
almost evenly, and on Hopper-v5 the reward fitted in the first ~165k steps correlated only
0.44–0.56 per step with the true one. ``--label-horizon 2e5`` front-loads them (39% of those
labels by a fifth of the run instead of 24%) and made that reward good ~130k steps sooner,
but over five Hopper seeds and two HalfCheetah seeds neither the final returns nor the
learning curves improved consistently, so the default stays A.1's
(``benchmarks/results/label-horizon/``).

``prefrl train --label-end F`` spends the whole budget by a share F of the run instead (the
loop passes ``timesteps · F``); the reward then holds still. On two Hopper seeds 0.75 gave
lower returns than the default 1 (``benchmarks/results/label-end-0.75/``).
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
