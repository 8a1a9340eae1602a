"""The reward ensemble learns preferences: loss falls, held-out accuracy rises."""
import numpy as np
import pytest
import torch

from prefrl.reward import RewardEnsemble
from prefrl.schedule import labels_due
from prefrl.trainer import RANDOM_ANSWER, RewardTrainer, bradley_terry_loss

OBS, ACT, T = 5, 2, 10


def synthetic_pairs(n, rng, w):
    """Clip pairs on random inputs, labeled by a perfect teacher whose reward is obs·w."""
    obs = rng.normal(size=(2, n, T, OBS)).astype(np.float32)
    acts = rng.normal(size=(2, n, T, ACT)).astype(np.float32)
    returns = (obs @ w).sum(-1)
    mu = (returns[0] > returns[1]).astype(np.float32)
    return obs[0], acts[0], obs[1], acts[1], mu


def accuracy(ensemble, pairs):
    obs_l, acts_l, obs_r, acts_r, mu = pairs
    diff = ensemble.clip_returns(obs_l, acts_l).mean(0) - ensemble.clip_returns(obs_r, acts_r).mean(0)
    return float(((diff > 0) == (mu > 0.5)).mean())


def test_ensemble_learns_held_out_preferences():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    w = rng.normal(size=OBS)
    train, test = synthetic_pairs(300, rng, w), synthetic_pairs(300, rng, w)
    ensemble = RewardEnsemble(OBS, ACT, members=3, hidden=32)
    before = accuracy(ensemble, test)
    trainer = RewardTrainer(ensemble, epochs=20, seed=0)
    first = trainer.fit(*train)
    second = trainer.fit(*train)
    after = accuracy(ensemble, test)
    assert after > 0.9 > before + 0.2
    assert second.train_loss < first.train_loss or second.train_loss < 0.3
    assert second.val_accuracy > 0.85
    assert first.restarts == second.restarts == 0  # members that fit are never started over


def test_a_member_stuck_confidently_wrong_starts_over():
    """Trained hard on the opposite labels, the members order pairs wrongly with confidence;
    the random-answer term leaves them little gradient, so a short refit on the right labels
    would not recover them. They start over from fresh weights and fit the labels."""
    torch.manual_seed(0)
    rng = np.random.default_rng(4)
    w = rng.normal(size=OBS)
    train, test = synthetic_pairs(300, rng, w), synthetic_pairs(300, rng, w)
    ensemble = RewardEnsemble(OBS, ACT, members=3, hidden=32)
    trainer = RewardTrainer(ensemble, epochs=60, l2=1e-8, seed=0)
    trainer.fit(*train[:4], 1 - train[4])
    assert accuracy(ensemble, test) < 0.1
    trainer.epochs = 4
    refit = trainer.fit(*train)
    assert refit.restarts == 3
    assert accuracy(ensemble, test) > 0.8 and refit.val_accuracy > 0.8


def test_members_differ_through_bootstrap():
    rng = np.random.default_rng(1)
    pairs = synthetic_pairs(60, rng, rng.normal(size=OBS))
    ensemble = RewardEnsemble(OBS, ACT, members=3, hidden=16)
    RewardTrainer(ensemble, epochs=5, seed=0).fit(*pairs)
    returns = ensemble.clip_returns(pairs[0], pairs[1])
    assert not np.allclose(returns[0], returns[1])


def test_validation_split_is_about_one_over_e_and_stable():
    trainer = RewardTrainer(RewardEnsemble(OBS, ACT, members=3), seed=3)
    small, large = trainer.val_mask(0, 100), trainer.val_mask(0, 5000)
    assert np.array_equal(small, large[:100])
    assert abs(large.mean() - 1 / np.e) < 0.03
    assert not np.array_equal(trainer.val_mask(1, 100), small)


def test_l2_grows_when_validation_loss_runs_away():
    """Random labels cannot generalize: val/train loss exceeds 1.5 and the L2 weight must rise."""
    rng = np.random.default_rng(2)
    obs_l, acts_l, obs_r, acts_r, _ = synthetic_pairs(80, rng, rng.normal(size=OBS))
    mu = rng.integers(0, 2, size=80).astype(np.float32)
    trainer = RewardTrainer(RewardEnsemble(OBS, ACT, members=2, hidden=64), epochs=50, l2=1e-6, seed=0)
    for _ in range(3):
        trainer.fit(obs_l, acts_l, obs_r, acts_r, mu)
    assert min(trainer.l2) > 1e-6


def test_bradley_terry_with_random_answers_and_ties():
    big = torch.tensor([50.0])
    # 10% random answers bound the loss of a confident mistake at -log(0.05).
    wrong = bradley_terry_loss(big, -big, torch.tensor([0.0])).item()
    assert wrong == pytest.approx(-np.log(RANDOM_ANSWER / 2), rel=1e-4)
    # A tie is fitted best by equal returns.
    grid = torch.linspace(-3, 3, 61)
    losses = [bradley_terry_loss(d.view(1), torch.zeros(1), torch.tensor([0.5])).item() for d in grid]
    assert abs(grid[int(np.argmin(losses))].item()) < 1e-6


def test_predict_matches_the_torch_model_after_normalization():
    rng = np.random.default_rng(4)
    ensemble = RewardEnsemble(OBS, ACT, members=3)
    obs = rng.normal(size=(500, OBS)).astype(np.float32)
    acts = rng.normal(size=(500, ACT)).astype(np.float32)
    ensemble.set_input_stats(obs, acts)
    ensemble.normalize(obs, acts)
    rewards = ensemble.predict(obs, acts)
    assert abs(rewards.mean()) < 1e-4
    with torch.no_grad():
        raw = ensemble(torch.tensor(obs), torch.tensor(acts))
    expected = ((raw - ensemble.out_mean[:, None]) / ensemble.out_std[:, None]).mean(0).numpy()  # nothing ended: zero = mean
    np.testing.assert_allclose(rewards, expected, atol=1e-5)


def test_label_schedule_front_loads_and_never_exceeds_budget():
    total, steps = 700, 1_000_000
    due = [labels_due(t, total, steps) for t in range(0, steps + 1, 50_000)]
    assert due[0] == 175 and due[-1] == total
    assert all(a <= b <= total for a, b in zip(due, due[1:]))
    # The rate h/(T+h) decays: the first half of training asks more than the second.
    half = labels_due(steps // 2, total, steps)
    assert half - 175 > total - half
    assert labels_due(10 * steps, total, steps) == total


def ending_pairs(n, rng, alive_worth):
    """Pairs of clips that end after a random number of steps, labeled by a teacher for whom
    every real step is worth ``alive_worth`` and nothing comes after the end (Hopper-v5's
    +1 per step alive, or an env where ending sooner is better when negative)."""
    obs = rng.normal(size=(2, n, T, OBS)).astype(np.float32)
    acts = rng.normal(size=(2, n, T, ACT)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=(2, n))
    mu = np.where(lengths[0] == lengths[1], 0.5, (alive_worth * (lengths[0] - lengths[1]) > 0)).astype(np.float32)
    return obs, acts, lengths, mu


@pytest.mark.parametrize("alive_worth", [1.0, -1.0])
def test_the_agent_reward_says_what_ending_an_episode_is_worth(alive_worth):
    """Measured from the learned episode-over reward, living is positive when the labels
    prefer clips that last, and negative when they prefer clips that end: PPO, which
    values every step after a termination at 0, then agrees with the labels."""
    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    obs, acts, lengths, mu = ending_pairs(300, rng, alive_worth)
    ensemble = RewardEnsemble(OBS, ACT, members=3, hidden=32)
    steps = obs.reshape(-1, OBS), acts.reshape(-1, ACT)
    ensemble.set_input_stats(*steps)
    ensemble.normalize(*steps)
    assert abs(ensemble.predict(*steps).mean()) < 1e-4  # nothing ended yet: the paper's zero mean
    metrics = RewardTrainer(ensemble, epochs=20, seed=0).fit(obs[0], acts[0], obs[1], acts[1], mu,
                                                             lengths_left=lengths[0], lengths_right=lengths[1])
    ensemble.normalize(*steps)
    assert metrics.ended_clips == int((lengths < T).sum()) and metrics.val_accuracy > 0.9
    assert np.sign(ensemble.predict(*steps).mean()) == np.sign(alive_worth)
    assert abs(ensemble.predict(*steps).mean()) > 1.0  # a standard deviation of the step reward or more


def test_clips_that_never_end_leave_the_reward_zero_mean():
    rng = np.random.default_rng(6)
    pairs = synthetic_pairs(100, rng, rng.normal(size=OBS))
    ensemble = RewardEnsemble(OBS, ACT, members=3, hidden=16)
    steps = pairs[0].reshape(-1, OBS), pairs[1].reshape(-1, ACT)
    ensemble.set_input_stats(*steps)
    metrics = RewardTrainer(ensemble, epochs=5, seed=0).fit(*pairs, lengths_left=np.full(100, T),
                                                            lengths_right=np.full(100, T))
    ensemble.normalize(*steps)
    assert metrics.ended_clips == 0 and not ensemble.ends_learned
    assert abs(ensemble.predict(*steps).mean()) < 1e-4
