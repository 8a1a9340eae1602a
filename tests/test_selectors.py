"""Behaviour of the query selectors (Christiano et al. 2017, §2.3)."""
import numpy as np
import pytest

from prefrl.errors import UserError
from prefrl.selectors import (SELECTORS, disagreement, entropy, preference_probs, random,
                              select)

M, N = 5, 40


def agreeing_members(seed: int = 0):
    """[M, N] returns on which every member predicts the same clear winner."""
    rng = np.random.default_rng(seed)
    gaps = rng.choice([-1.0, 1.0], N) * rng.uniform(2.0, 4.0, N)
    left = np.tile(gaps, (M, 1)) + rng.normal(0, 0.05, (M, N))
    return left, np.zeros((M, N))


def test_preference_probs_is_a_stable_sigmoid():
    left = np.array([[0.0, 1.0, 1000.0, -1000.0]])
    right = np.array([[0.0, 0.0, 0.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = preference_probs(left, right)
    assert p.shape == (1, 4)
    np.testing.assert_allclose(p[0], [0.5, 1 / (1 + np.exp(-1.0)), 1.0, 0.0])


def test_disagreement_top_k_is_the_disputed_subset():
    left, right = agreeing_members()
    disputed = np.array([3, 11, 17, 29, 36])
    # Half the members say left wins by 5, half say right wins by 5.
    signs = np.where(np.arange(M) % 2 == 0, 1.0, -1.0)[:, None]
    left[:, disputed] = 5.0 * signs
    rng = np.random.default_rng(0)
    chosen, scores = select("disagreement", left, right, k=len(disputed), rng=rng)
    assert sorted(chosen) == sorted(disputed)
    all_scores = disagreement(left, right, rng)
    assert all_scores.shape == (N,)
    np.testing.assert_allclose(scores, all_scores[chosen])  # the scores the picks were made by


def test_entropy_prefers_coin_flips():
    left, right = agreeing_members(1)
    coin_flips = np.array([0, 7, 20])
    # Members agree with each other that these are close calls: mean P ~ 0.5.
    left[:, coin_flips] = np.random.default_rng(2).normal(0, 0.01, (M, len(coin_flips)))
    rng = np.random.default_rng(0)
    chosen = select("entropy", left, right, k=3, rng=rng)[0]
    assert sorted(chosen) == sorted(coin_flips)
    scores = entropy(left, right, rng)
    assert np.all(scores <= np.log(2) + 1e-12)
    np.testing.assert_allclose(scores[coin_flips], np.log(2), atol=1e-3)


def test_entropy_is_finite_at_certainty():
    scores = entropy(np.array([[1e4, -1e4]]), np.zeros((1, 2)), np.random.default_rng(0))
    assert np.all(np.isfinite(scores)) and np.all(scores < 1e-6)


def test_random_is_reproducible_and_reaches_every_pair():
    left, right = agreeing_members()
    a = select("random", left, right, k=5, rng=np.random.default_rng(9))[0]
    b = select("random", left, right, k=5, rng=np.random.default_rng(9))[0]
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(10)
    seen = set()
    for _ in range(200):
        seen.update(select("random", left, right, k=5, rng=rng)[0].tolist())
    assert seen == set(range(N))
    assert random(left, right, rng).shape == (N,)


def test_ties_are_broken_at_random():
    # Identical members: every pair scores 0, so which ones come first is left to the rng.
    left, right = np.zeros((M, N)), np.zeros((M, N))
    firsts = {int(select("disagreement", left, right, k=1, rng=np.random.default_rng(s))[0][0])
              for s in range(50)}
    assert len(firsts) > 10


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_k_larger_than_n_returns_all(name):
    left, right = agreeing_members()
    chosen = select(name, left, right, k=N + 10, rng=np.random.default_rng(0))[0]
    assert sorted(chosen.tolist()) == list(range(N))


def test_top_k_is_sorted_best_first():
    left, right = agreeing_members()
    rng = np.random.default_rng(0)
    chosen = select("entropy", left, right, k=10, rng=rng)[0]
    scores = entropy(left, right, rng)[chosen]
    assert np.all(np.diff(scores) <= 0)


def test_unknown_selector_lists_names():
    left, right = agreeing_members()
    with pytest.raises(UserError) as err:
        select("bogus", left, right, k=3, rng=np.random.default_rng(0))[0]
    assert all(name in str(err.value) for name in SELECTORS)
