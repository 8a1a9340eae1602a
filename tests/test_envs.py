"""Environments: registration, the toy and no-termination envs, make_env and MuJoCo replay."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must precede any mujoco import

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

import prefrl.envs
from prefrl.environment import (RecordSimState, check_spaces, clip_steps, is_mujoco, make_env,
                                set_sim_state)
from prefrl.errors import UserError


def run_random(env, steps, seed=0):
    """Random actions for ``steps`` steps; returns (rewards, terminated flags, infos)."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    rewards, terms, infos = [], [], []
    for _ in range(steps):
        _, r, term, trunc, info = env.step(env.action_space.sample())
        rewards.append(r), terms.append(term), infos.append(info)
        if term or trunc:
            env.reset()
    return np.array(rewards), np.array(terms), infos


# -- registration -----------------------------------------------------------------------

def test_register_envs_is_idempotent_and_covers_namespace():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnasium warns when re-registering an id
        prefrl.envs.register_envs()
        prefrl.envs.register_envs()
    ours = {i for i in gym.registry if i.startswith("prefrl/")}
    assert ours == set(prefrl.envs.ENV_IDS)


@pytest.mark.parametrize("env_id", prefrl.envs.ENV_IDS)
def test_gymnasium_check_env(env_id):
    toy = "Point" in env_id
    # MuJoCo's "human" render mode needs a display, so only the toy envs check rendering.
    env = gym.make(env_id, render_mode="rgb_array" if toy else None)
    check_env(env.unwrapped, skip_render_check=not toy)
    env.close()


# -- toy envs ---------------------------------------------------------------------------

def test_point_goal_dynamics_reward_and_render():
    env = make_env("prefrl/PointGoal-v0", seed=0, render_mode="rgb_array")
    obs, _ = env.reset(seed=1)
    assert obs.dtype == np.float32 and obs.shape == (4,)
    assert np.all(np.abs(obs) <= 1.0)
    frame0 = env.render()
    assert frame0.shape == (64, 64, 3) and frame0.dtype == np.uint8
    obs2, reward, term, trunc, _ = env.step(np.array([5.0, -5.0]))  # clipped to ±1
    np.testing.assert_allclose(obs2[:2], obs[:2] + [0.1, -0.1], atol=1e-6)
    assert reward == pytest.approx(-np.linalg.norm(obs2[:2] - obs2[2:]), abs=1e-6)
    assert not (term or trunc)
    assert not np.array_equal(env.render(), frame0)  # the point moved
    for _ in range(100):  # pushing one way stays inside the walls; the time limit is 50
        obs, _, term, trunc, _ = env.step(np.array([1.0, 1.0]))
        if trunc:
            break
    assert trunc and not term and np.all(obs[:2] <= 1.5)


def test_point_goal_fall_episodes_are_mostly_short():
    env = make_env("prefrl/PointGoalFall-v0", seed=0)
    lengths = []
    for episode in range(100):
        env.reset(seed=episode)
        for t in range(1, 51):
            _, reward, term, trunc, info = env.step(env.action_space.sample())
            if term or trunc:
                break
        lengths.append(t)
        if term:
            assert info["fell"] and reward < -env.unwrapped.fall_penalty + 1e-9
    assert np.mean(np.array(lengths) < 10) > 0.5


# -- MuJoCo variants without termination ------------------------------------------------

@pytest.mark.parametrize("env_id", ["prefrl/HopperNoTerm-v0", "prefrl/Walker2dNoTerm-v0"])
def test_no_term_variants_penalize_falls_instead_of_ending(env_id):
    penalised = make_env(env_id, fall_penalty=2.5)
    plain = make_env(env_id, fall_penalty=0.0)
    r_pen, terms, infos = run_random(penalised, 300)
    r_plain, _, _ = run_random(plain, 300)
    assert not terms.any()
    unhealthy = np.array([info["reward_fall"] < 0 for info in infos])
    assert unhealthy.any() and not unhealthy.all()  # random actions fall over, eventually
    np.testing.assert_allclose(r_plain - r_pen, 2.5 * unhealthy, atol=1e-9)
    assert make_env(env_id).unwrapped.fall_penalty == 1.0  # the documented default


# -- MuJoCo state recording and replay --------------------------------------------------

def test_sim_state_is_the_state_before_the_action_and_replays():
    env = make_env("Hopper-v5", seed=0)
    assert isinstance(env, RecordSimState) and is_mujoco(env)
    obs, info = env.reset(seed=0)
    observations, states, actions = [obs], [info["sim_state"]], []
    while len(actions) < 40:
        action = env.action_space.sample()
        obs, _, term, trunc, info = env.step(action)
        assert info["sim_state"].dtype == np.float64
        actions.append(action)
        observations.append(obs)
        states.append(info["sim_state"])
        if term or trunc:  # random Hopper-v5 falls within a few dozen steps
            break
    steps = len(actions)
    assert steps >= 10
    # info of step t carries the state of obs t; the reset info carries that of obs 0.
    np.testing.assert_array_equal(states[0], states[1])
    replay = gym.make("Hopper-v5")
    replay.reset(seed=123)  # a different episode: everything must come from the state
    for t in range(steps):
        restored = set_sim_state(replay, states[t + 1])
        np.testing.assert_allclose(restored, observations[t], atol=1e-12)
        next_obs, *_ = replay.step(actions[t])  # and the dynamics continue identically
        np.testing.assert_allclose(next_obs, observations[t + 1], atol=1e-9)
    assert not is_mujoco(make_env("prefrl/PointGoal-v0"))


def test_replayed_state_renders_the_same_frame():
    source = make_env("Hopper-v5", seed=0, render_mode="rgb_array")
    target = make_env("Hopper-v5", seed=1, render_mode="rgb_array")
    source.reset(seed=0)
    for _ in range(10):
        _, _, _, _, info = source.step(source.action_space.sample())
    frame = source.render()  # frame after 10 steps = the state before step 11
    _, _, _, _, info = source.step(source.action_space.sample())
    set_sim_state(target, info["sim_state"])
    replayed = target.render().astype(int)
    # After mj_step MuJoCo's body poses lag the state by one substep, so a few pixels of
    # the live frame differ by 1 level; a different moment differs far more.
    assert np.abs(replayed - frame).max() <= 2
    other_moment = source.render().astype(int)
    assert np.abs(other_moment - frame).mean() > 10 * np.abs(replayed - frame).mean()


# -- clip length ------------------------------------------------------------------------

def test_clip_steps():
    assert clip_steps(gym.make("HalfCheetah-v5")) == 30  # dt 0.05 s -> 1.5 s = 30 steps
    assert clip_steps(gym.make("Hopper-v5")) == 60  # dt 0.008 s -> 188, clamped
    assert clip_steps(gym.make("HalfCheetah-v5"), seconds=0.1) == 15  # clamped below
    assert clip_steps(make_env("prefrl/PointGoal-v0")) == 25  # no dt
    assert clip_steps(make_env("prefrl/HopperBackflip-v0")) == 125  # the env asks for 1 s: a whole flip


# -- make_env errors and seeding --------------------------------------------------------

@pytest.mark.parametrize("env_id", ["prefrl/NoSuchEnv-v0", "NoSuchNamespace/Foo-v0",
                                    "CartPole-v99", "no_such_module_xyz:Foo-v0", "json:Foo-v0"])
def test_unknown_ids_are_user_errors(env_id):
    with pytest.raises(UserError) as err:
        make_env(env_id)
    message = str(err.value)
    assert f"'{env_id}'" in message and "\n" not in message and "module:Env-vN" in message


def test_user_module_ids(tmp_path, monkeypatch):
    (tmp_path / "broken_envs_mod.py").write_text("raise RuntimeError('oops')\n")
    (tmp_path / "user_envs_mod.py").write_text(
        "import gymnasium as gym\n"
        "if 'UserPoint-v0' not in gym.registry:\n"
        "    gym.register('UserPoint-v0', entry_point='prefrl.envs.toy:PointGoalEnv',"
        " max_episode_steps=5)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="broken_envs_mod:Foo-v0.*oops"):
        make_env("broken_envs_mod:Foo-v0")
    env = make_env("user_envs_mod:UserPoint-v0", seed=0)
    assert env.observation_space.shape == (4,)


def test_seed_makes_runs_repeat():
    first = [make_env("prefrl/PointGoal-v0", seed=7) for _ in range(2)]
    obs = [env.reset()[0] for env in first]
    acts = [env.action_space.sample() for env in first]
    np.testing.assert_array_equal(obs[0], obs[1])
    np.testing.assert_array_equal(acts[0], acts[1])


# -- supported spaces -------------------------------------------------------------------

class _SpacesEnv(gym.Env):
    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space


def test_check_spaces():
    box = spaces.Box(-1, 1, (3,))
    check_spaces(make_env("prefrl/PointGoal-v0"))
    check_spaces(make_env("CartPole-v1"))  # Discrete actions
    check_spaces(_SpacesEnv(spaces.Box(0, 255, (84, 84, 3), np.uint8), spaces.Discrete(4)))
    with pytest.raises(UserError, match="observation space Dict.*Box"):
        check_spaces(_SpacesEnv(spaces.Dict({"a": box}), box))
    with pytest.raises(UserError, match="action space MultiDiscrete.*Box or Discrete"):
        check_spaces(_SpacesEnv(box, spaces.MultiDiscrete([2, 3])))


# -- learnability: the reference the learned-reward tests compare against ----------------

def _mean_return(policy, episodes=30, seed=1000):
    env = make_env("prefrl/PointGoal-v0")
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        total, done = 0.0, False
        while not done:
            obs, reward, term, trunc, _ = env.step(policy(obs))
            total, done = total + reward, term or trunc
        returns.append(total)
    return float(np.mean(returns))


def test_ppo_learns_point_goal_from_true_reward():
    import torch
    from stable_baselines3 import PPO

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: extra threads only spin, badly so on a busy machine
    try:
        model = PPO("MlpPolicy", make_env("prefrl/PointGoal-v0", seed=0), n_steps=256,
                    batch_size=64, seed=0, device="cpu")
        model.learn(20_000)
    finally:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    random_return = _mean_return(lambda obs: rng.uniform(-1, 1, 2))
    ppo_return = _mean_return(lambda obs: model.predict(obs, deterministic=True)[0])
    # Measured: random ≈ -51, PPO ≈ -6.4 (optimal ≈ -5): demand at least half the gap.
    assert ppo_return > random_return / 2, (ppo_return, random_return)
