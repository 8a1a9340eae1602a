"""Behaviour of the simulated teachers (B-Pref, Lee et al. 2021)."""
import math

import numpy as np
import pytest

from prefrl.clips import ANSWERS, Clip
from prefrl.errors import UserError
from prefrl.oracles import ORACLES, SimulatedTeacher, make_oracle

T = 10


def clip(rewards, length=None) -> Clip:
    """A clip with the given per-step rewards, zero-padded to T steps."""
    rewards = np.asarray(rewards, dtype=np.float32)
    length = len(rewards) if length is None else length
    padded = np.zeros(T, dtype=np.float32)
    padded[: len(rewards)] = rewards
    return Clip(obs=np.zeros((T, 3), np.float32), acts=np.zeros((T, 2), np.float32),
                rewards=padded, length=length)


def flat(total: float, length: int = T) -> Clip:
    """A clip whose return ``total`` is spread evenly over its real steps."""
    return clip(np.full(length, total / length))


def random_pairs(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    left = [flat(r) for r in rng.uniform(0, 10, n)]
    right = [flat(r) for r in rng.uniform(0, 10, n)]
    return left, right


def test_presets_are_named_and_answer_in_answers():
    left, right = random_pairs(50)
    for name in ORACLES:
        teacher = make_oracle(name)
        assert teacher.name == name
        assert set(teacher(left, right)) <= set(ANSWERS)
    assert make_oracle("perfect")([], []) == []


def test_perfect_prefers_higher_true_return():
    left, right = random_pairs(200)
    answers = make_oracle("perfect")(left, right)
    expected = ["left" if a.true_return > b.true_return else "right" for a, b in zip(left, right)]
    assert answers == expected


def test_perfect_ignores_padding_and_calls_exact_ties_equal():
    # Rewards past `length` are not real steps: a clip of length 2 with a big number in
    # its padding still has return 2.
    padded = clip([1.0, 1.0, 100.0], length=2)
    assert make_oracle("perfect")([padded], [flat(3.0)]) == ["right"]
    assert make_oracle("perfect")([flat(2.0)], [flat(2.0)]) == ["equal"]


def test_same_seed_same_answers_different_seed_differs():
    left, right = random_pairs(300)
    a = make_oracle("stochastic", seed=1)(left, right)
    b = make_oracle("stochastic", seed=1)(left, right)
    c = make_oracle("stochastic", seed=2)(left, right)
    assert a == b
    assert a != c


def test_mistake_flips_about_eps():
    left, right = random_pairs(2000, seed=3)
    truth = make_oracle("perfect")(left, right)
    noisy = make_oracle("mistake", eps=0.3, seed=5)(left, right)
    flipped = np.mean([t != n for t, n in zip(truth, noisy)])
    # Binomial(2000, 0.3) has sd ~0.01; 0.04 is four sd.
    assert abs(flipped - 0.3) < 0.04


def test_stochastic_left_rate_matches_bradley_terry():
    gap, beta, n = 1.0, 1.0, 4000
    left = [flat(5.0 + gap)] * n
    right = [flat(5.0)] * n
    answers = make_oracle("stochastic", beta=beta, seed=7)(left, right)
    rate = np.mean([a == "left" for a in answers])
    expected = 1.0 / (1.0 + math.exp(-beta * gap))  # ~0.731, sd of the rate ~0.007
    assert abs(rate - expected) < 0.03


def test_myopic_prefers_late_reward():
    early = clip([10.0] + [0.0] * (T - 1))  # return 10, all at the start
    late = clip([0.0] * (T - 1) + [3.0])    # return 3, at the last step
    assert make_oracle("perfect")([early], [late]) == ["left"]
    assert make_oracle("myopic", gamma=0.5)([early], [late]) == ["right"]


def test_myopic_discounts_from_the_last_real_step():
    # Length-3 clip: its last *real* step gets weight 1, not gamma**(T-3).
    # Right: 5 * 0.5**3 = 0.625. Left: 3 if discounted from step 2, 0.02 from step T-1.
    short = clip([0.0, 0.0, 3.0], length=3)
    early = clip([0.0] * 6 + [5.0] + [0.0] * 3)
    assert make_oracle("myopic", gamma=0.5)([short], [early]) == ["left"]


def test_skip_only_when_both_clips_below_threshold():
    # scale = mean return of the call = (0.5 + 1 + 10 + 20) / 4 = 7.875; skip=0.5 -> 3.94.
    left = [flat(0.5), flat(10.0)]
    right = [flat(1.0), flat(20.0)]
    answers = make_oracle("skip", skip=0.5)(left, right)
    assert answers == ["incomparable", "right"]
    # One good clip is enough to answer.
    assert make_oracle("skip", skip=0.5)([flat(0.5)], [flat(20.0)]) == ["right"]


def test_equal_when_returns_are_close():
    # scale = (10 + 10.5 + 10 + 20) / 4 = 12.625; equal=0.1 -> threshold 1.26.
    left = [flat(10.0), flat(10.0)]
    right = [flat(10.5), flat(20.0)]
    assert make_oracle("equal", equal=0.1)(left, right) == ["equal", "right"]


def test_overrides_of_none_are_ignored():
    teacher = make_oracle("mistake", eps=None, beta=None)
    assert teacher.eps == 0.1 and math.isinf(teacher.beta)


@pytest.mark.parametrize("name", ["bogus", "", "Perfect"])
def test_unknown_name_lists_valid_names(name):
    with pytest.raises(UserError) as err:
        make_oracle(name)
    message = str(err.value)
    assert "\n" not in message
    assert all(valid in message for valid in ORACLES)


@pytest.mark.parametrize("param, value, flag", [
    ("beta", 0.0, "--oracle-beta"), ("beta", -1.0, "--oracle-beta"),
    ("gamma", 0.0, "--oracle-gamma"), ("gamma", 1.5, "--oracle-gamma"),
    ("eps", -0.1, "--oracle-eps"), ("eps", 1.1, "--oracle-eps"),
    ("skip", -0.1, "--oracle-skip"), ("equal", -0.1, "--oracle-equal"),
    ("eps", "lots", "--oracle-eps"),
])
def test_bad_params_name_the_flag(param, value, flag):
    with pytest.raises(UserError, match=flag):
        make_oracle("perfect", **{param: value})


def test_direct_construction_validates_too():
    with pytest.raises(UserError, match="--oracle-gamma"):
        SimulatedTeacher(gamma=0.0)
