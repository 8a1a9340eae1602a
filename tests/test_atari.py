"""Atari: the preprocessed env, score blanking on real frames, and the CNN reward ensemble."""
import functools
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("ale_py")
pytest.importorskip("cv2")

from prefrl.atari import SCORE_AREAS, blank_score, is_atari, make_atari_env  # noqa: E402
from prefrl.cnn_reward import CnnRewardEnsemble  # noqa: E402
from prefrl.errors import UserError  # noqa: E402
from prefrl.environment import make_env  # noqa: E402
from prefrl.trainer import RewardTrainer  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """Keep torch to one thread here (the CNN would otherwise take every core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_is_atari_and_no_ale_at_import():
    assert is_atari("ALE/Pong-v5") and not is_atari("HalfCheetah-v5") and not is_atari(None)
    code = "import sys, prefrl, prefrl.atari, prefrl.cnn_reward; assert 'ale_py' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pong_observations_actions_and_true_score():
    env = make_env("ALE/Pong-v5", seed=0, record_frames=True)
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (4, 84, 84) == env.observation_space.shape
    assert env.action_space.n == 6 and info["frame"].shape == (210, 160, 3)
    rewards = []
    for _ in range(2000):
        obs, r, terminated, truncated, info = env.step(env.action_space.sample())
        rewards.append(r)
        if r != 0:
            break
    assert info["frame"].shape == (210, 160, 3) and info["frame"].dtype == np.uint8
    assert set(rewards) <= {-1.0, 0.0, 1.0} and rewards[-1] in (-1.0, 1.0)  # a point is ±1: the game score


def _score_change(env_id: str, steps_after: int = 5):
    """Random play until the score changes; the last frame before that step and ``steps_after`` steps on."""
    env = make_env(env_id, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(5000):
        before = obs[-1]
        obs, r, terminated, truncated, _ = env.step(env.action_space.sample())
        if r != 0:
            for _ in range(steps_after):  # the digits may be redrawn a few frames later
                obs, *_ = env.step(env.action_space.sample())
            return before, obs[-1]
        if terminated or truncated:
            obs, _ = env.reset()
    pytest.fail(f"{env_id}: no score change in 5000 random steps")


@pytest.mark.parametrize("game, band", [("Pong", 13), ("Breakout", 13)])
def test_score_area_covers_the_digits_that_change(game, band):
    """Rows 0..band hold only the score and the static top wall; every pixel there that changes
    when the score does must lie inside the game's score area, and blanking must hide it."""
    before, after = _score_change(f"ALE/{game}-v5")
    changed_rows = np.flatnonzero((before[:band] != after[:band]).any(1))
    start, stop = SCORE_AREAS[game]
    assert len(changed_rows) > 0
    assert start <= changed_rows.min() and changed_rows.max() < stop, changed_rows
    assert np.array_equal(blank_score(before, game)[:band], blank_score(after, game)[:band])


def test_blank_score_default_and_batches():
    frames = np.full((2, 3, 4, 84, 84), 7, np.uint8)
    out = blank_score(frames, "NoSuchGame")  # unknown games: top 10% of rows
    assert (out[..., :8, :] == 0).all() and (out[..., 8:, :] == 7).all() and (frames == 7).all()
    assert torch.equal(blank_score(torch.as_tensor(frames), "Pong"), torch.as_tensor(blank_score(frames, "Pong")))


def _synthetic_pairs(rng, n, steps=2, patch=(slice(40, 48), slice(40, 48))):
    """Clip pairs of random dark frames whose true per-step reward is a bright patch's level;
    labels from the perfect rule (higher summed patch level is preferred)."""
    def clips():
        obs = rng.integers(0, 64, (n, steps, 4, 84, 84), dtype=np.uint8)
        level = rng.integers(0, 256, (n, steps))
        obs[:, :, -1, patch[0], patch[1]] = level[..., None, None]
        return obs, np.eye(6, dtype=np.float32)[rng.integers(0, 6, (n, steps))], level.sum(1)
    (ol, al, rl), (orr, ar, rr) = clips(), clips()
    return ol, al, orr, ar, (rl > rr).astype(np.float32)


def _accuracy(ensemble, pairs):
    ol, al, orr, ar, mu = pairs
    return ((ensemble.clip_returns(ol, al).mean(0) > ensemble.clip_returns(orr, ar).mean(0)) == (mu > 0.5)).mean()


def test_cnn_ensemble_learns_pixel_preference_and_ignores_score():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    ensemble = CnnRewardEnsemble((4, 84, 84), act_dim=6, members=2,
                                 blank=functools.partial(blank_score, game="Pong"))
    train, held_out = _synthetic_pairs(rng, 200), _synthetic_pairs(rng, 200)
    untrained = _accuracy(ensemble, held_out)
    RewardTrainer(ensemble, batch_size=16, epochs=1, min_steps=60).fit(*train)
    trained = _accuracy(ensemble, held_out)
    assert trained > 0.8 and trained > untrained + 0.2, (untrained, trained)

    obs = held_out[0][:8, 0]
    acts = held_out[1][:8, 0]
    ensemble.normalize(held_out[0][:, 0], held_out[1][:, 0])
    scored = obs.copy()
    scored[..., :9, :] = rng.integers(0, 256, scored[..., :9, :].shape)  # only Pong's score rows differ
    assert np.allclose(ensemble.predict(obs, acts), ensemble.predict(scored, acts))
    assert ensemble.predict(obs, acts).shape == (8,)
    assert ensemble(torch.as_tensor(held_out[0][:3]), torch.as_tensor(held_out[1][:3])).shape == (2, 3, 2)


def test_missing_ale_py_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # makes `import ale_py` raise ImportError
    with pytest.raises(UserError, match=r"pip install 'prefrl\[atari\]'"):
        make_atari_env("ALE/Pong-v5")


def test_unknown_game_is_a_user_error():
    with pytest.raises(UserError, match="ALE/NoSuchGame-v5"):
        make_atari_env("ALE/NoSuchGame-v5")
