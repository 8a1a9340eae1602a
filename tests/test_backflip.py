"""The backflip env, its success test and the scripted judge (Christiano et al. 2017, §3.2)."""
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from prefrl.clips import Clip
from prefrl.environment import get_sim_state, make_env, set_sim_state
from prefrl.envs.backflip import (BackflipJudge, count_backflips, evaluate_backflips, flip_progress,
                                  is_full_backflip, torso_rotation)

ENV_ID = "prefrl/HopperBackflip-v0"
TURN = 2 * math.pi


@pytest.fixture(scope="module")
def env():
    env = make_env(ENV_ID, seed=0)
    yield env
    env.close()


def trajectory(env, turns: float, end_height: float = 1.25, flight: int = 40, hold: int = 15):
    """Real env states ``[flight + hold, 12]`` of a scripted flip, set through set_sim_state.

    The root angle goes ``turns`` full turns backward (negative ``turns``: forward) while
    the torso is in the air, then is held at the final angle at ``end_height``.
    """
    env.reset(seed=0)
    base = get_sim_state(env)
    states = []
    for t in range(flight + hold):
        s = base.copy()
        frac = min(1.0, t / (flight - 1))
        s[2] = -TURN * turns * frac  # backward = decreasing rooty (module doc)
        s[1] = 1.25 + 0.6 * math.sin(math.pi * frac) if t < flight else end_height
        set_sim_state(env, s)
        states.append(get_sim_state(env))
    return np.stack(states)


def roll(env, start_turns: float, end_turns: float, height: float, steps: int = 40):
    """Real env states of the torso turning from ``start_turns`` to ``end_turns`` backward
    turns (since reset) at a fixed ``height``: a hopper rolling on the ground."""
    env.reset(seed=0)
    base, states = get_sim_state(env), []
    for t in range(steps):
        s = base.copy()
        s[2] = -TURN * (start_turns + (end_turns - start_turns) * t / (steps - 1))
        s[1] = height
        set_sim_state(env, s)
        states.append(get_sim_state(env))
    return np.stack(states)


def clip_of(states, length=None):
    steps = len(states)
    return Clip(obs=np.zeros((steps, 11), np.float32), acts=np.zeros((steps, 3), np.float32),
                rewards=np.zeros(steps, np.float32), length=length or steps, states=states,
                env_id=ENV_ID)


# -- the env ----------------------------------------------------------------------------

def test_registered_and_passes_check_env():
    assert ENV_ID in gym.registry and gym.spec(ENV_ID).max_episode_steps == 1000
    env = gym.make(ENV_ID)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_backward_is_decreasing_root_angle(env):
    """The evidence for the sign: a negative pitch velocity sends the head towards -x,
    away from where the toe points and from Hopper's forward (+x) direction."""
    base = env.unwrapped
    model, data = base.model, base.data
    env.reset(seed=0)
    s = get_sim_state(env)
    s[1], s[6 + 1], s[6 + 2] = 1.8, 3.0, -8.0  # up in the air, pitching with qvel[2] < 0
    set_sim_state(env, s)
    rewards = [env.step(np.zeros(3))[1] for _ in range(8)]
    torso = model.body("torso").id
    head_dx = (data.xmat[torso].reshape(3, 3) @ [0, 0, 0.2])[0]  # top of torso minus centre
    assert data.qpos[2] < -0.3 and head_dx < -0.05
    assert all(r > 0 for r in rewards)  # backward angular velocity pays


def test_no_termination_when_fallen(env):
    env.reset(seed=0)
    s = get_sim_state(env)
    s[1], s[2] = 0.3, math.pi / 2  # lying on its back, far outside the healthy range
    set_sim_state(env, s)
    for _ in range(50):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not env.unwrapped.is_healthy
        assert not terminated and not truncated


# -- the success test -------------------------------------------------------------------

def test_torso_rotation_sign(env):
    back = torso_rotation(trajectory(env, 1.0))
    assert back[0] == 0.0 and back[-1] >= TURN - 1e-9 and back.max() >= TURN - 1e-9
    forward = torso_rotation(trajectory(env, -1.0))
    assert forward[-1] <= -TURN + 1e-9
    # Angles wrapped to (-π, π] give the same answer.
    states = trajectory(env, 1.0)
    wrapped = states.copy()
    wrapped[:, 2] = np.remainder(states[:, 2] + math.pi, TURN) - math.pi
    np.testing.assert_allclose(torso_rotation(wrapped), torso_rotation(states), atol=1e-9)


def test_full_backflip_needs_a_whole_turn_and_an_upright_landing(env):
    assert is_full_backflip(trajectory(env, 1.0))
    assert count_backflips(trajectory(env, 1.0)) == 1
    assert count_backflips(np.concatenate([trajectory(env, 1.0), trajectory(env, 1.0)[1:] +
                                           np.r_[0, 0, -TURN, [0] * 9]])) == 2
    assert not is_full_backflip(trajectory(env, 0.5))             # half a flip
    assert not is_full_backflip(trajectory(env, 1.0, end_height=0.3))  # full turn, lying down
    assert not is_full_backflip(trajectory(env, -1.0))            # a front flip
    assert not is_full_backflip(trajectory(env, 1.0, hold=5))     # upright too briefly
    assert not is_full_backflip(trajectory(env, 0.0))             # standing is not flipping


def test_a_flip_is_one_quick_turn_from_a_stance(env):
    def stand(turns, steps=15):
        return roll(env, turns, turns, height=1.25, steps=steps)

    quick = np.concatenate([stand(0, 5), roll(env, 0.05, 0.95, 0.3, steps=100), stand(1.0)])
    slow = np.concatenate([stand(0, 5), roll(env, 0.05, 0.95, 0.3, steps=300), stand(1.0)])
    assert count_backflips(quick) == 1  # a quick roll over the back onto the foot passes
    assert count_backflips(slow) == 0   # 2.4 s on the ground: a tumble that ends standing
    # Standing at one turn (after too slow a turn), swinging forward and back, standing at
    # 1.05 turns: 1.05 turns since reset, but 0.05 since the hopper last stood.
    swings = np.concatenate([slow, roll(env, 1.0, 0.5, 0.3, steps=30), roll(env, 0.5, 1.05, 0.3, steps=30),
                             stand(1.05)])
    assert count_backflips(swings) == 0
    assert count_backflips(np.concatenate([swings, roll(env, 1.1, 1.9, 0.3, steps=60), stand(2.0)])) == 1


# -- the judge --------------------------------------------------------------------------

def test_judge_prefers_more_rotation_and_is_deterministic(env):
    full, half, none = (clip_of(trajectory(env, k)) for k in (1.0, 0.5, 0.0))
    judge = BackflipJudge(seed=3)
    assert judge.name == "backflip" and isinstance(judge.rng, np.random.Generator)
    left, right = [full, half, none, full], [half, full, full, full]
    answers = judge(left, right)
    assert answers == ["left", "right", "right", "equal"]
    assert BackflipJudge(seed=99)(left, right) == answers == judge(left, right)


def test_judge_prefers_landing_to_spinning_on(env):
    landed = clip_of(trajectory(env, 1.0))                       # a turn, then 15 upright steps
    spinning = clip_of(trajectory(env, 1.4, end_height=0.3))     # more rotation, ends on its back
    assert BackflipJudge()([landed], [spinning]) == ["left"]


def test_judge_prefers_getting_up_after_a_turn_to_spinning_on(env):
    # Both clips start on the back after a full turn. One rolls on through half a turn more
    # (the judge before this one preferred that: more rotation); the other turns back
    # towards upright and rises to 0.6 (not yet standing, so no landed steps).
    spinning = clip_of(roll(env, 1.25, 1.75, height=0.3))
    getting_up = clip_of(np.concatenate([roll(env, 1.25, 1.08, height=0.3)[:-1], roll(env, 1.08, 1.08, 0.6)[:1]]))
    assert BackflipJudge()([spinning], [getting_up]) == ["right"]
    assert BackflipJudge()([getting_up], [spinning]) == ["left"]


def test_flip_progress_orders_the_stages_of_a_flip():
    half, lying_after, standing_after = flip_progress(
        np.array([math.pi, 1.25 * TURN, TURN]), -np.array([math.pi, 1.25 * TURN, TURN]),
        np.array([0.9, 0.3, 1.25]))
    assert half < lying_after < standing_after
    # Further turns add nothing: lying after two turns is no further along than after one.
    assert flip_progress(2.25 * TURN, -2.25 * TURN, 0.3) == pytest.approx(lying_after)
    # Forward rotation is negative progress.
    assert flip_progress(-math.pi, math.pi, 0.9) < 0 < half


def test_judge_breaks_close_calls_on_the_landing_and_ignores_padding(env):
    landed, lying = clip_of(trajectory(env, 1.0)), clip_of(trajectory(env, 1.0, end_height=0.3))
    assert BackflipJudge()([landed], [lying]) == ["left"]
    assert BackflipJudge()([lying], [landed]) == ["right"]
    # Only states[:length] count: a half-flip whose padding would turn it into a full one.
    states = trajectory(env, 0.5)
    padded = np.concatenate([states, trajectory(env, 1.0)])
    assert BackflipJudge()([clip_of(padded, length=len(states))], [clip_of(states)]) == ["equal"]


def test_judge_needs_states():
    bare = Clip(obs=np.zeros((5, 11)), acts=np.zeros((5, 3)), rewards=np.zeros(5), length=5)
    with pytest.raises(ValueError, match="states"):
        BackflipJudge()([bare], [bare])


def test_evaluate_backflips_with_a_still_policy():
    class Still:
        def predict(self, obs, deterministic=True):
            return np.zeros(3, np.float32), None

    result = evaluate_backflips(Still(), episodes=1, seed=0)
    assert result["episodes"] == 1 and result["full_backflips"] == 0 and result["backflips"] == 0
    assert result["max_rotation"] < math.pi
