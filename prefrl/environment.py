"""Making environments, checking what we support, and recording/replaying MuJoCo states.

Clips are shown to labelers later and in another process (Christiano et al. 2017, §2.2).
For MuJoCo the training process does not render: it records the simulator state that goes
with each observation, and the labeling process replays it with :func:`set_sim_state`.
"""
from __future__ import annotations

import importlib

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from prefrl.errors import UserError


def make_env(env_id: str, seed: int | None = None, render_mode: str | None = None,
             record_states: bool = True, record_frames: bool = False, **kwargs) -> gym.Env:
    """``gym.make(env_id, render_mode=..., **kwargs)`` with prefrl's envs registered.

    ``env_id`` is anything gymnasium takes, including ``"module:Env-vN"`` for a user's
    module that registers ``Env-vN`` on import. MuJoCo envs come wrapped in
    :class:`RecordSimState` unless ``record_states`` is off (nothing will be replayed);
    with ``record_frames``, envs that cannot be replayed from states record frames instead
    (:class:`RecordFrames`, for showing clips to a person). With a ``seed``, the env's RNG is seeded by one
    ``reset(seed=seed)`` (later plain resets continue that stream, so runs repeat) and so
    is its action space.

    Raises:
        UserError: the id is unknown, its namespace is, or its module does not import.
    """
    import prefrl.envs  # noqa: F401  (registers the prefrl/ ids)

    module = env_id.rpartition(":")[0] if isinstance(env_id, str) else ""
    if module:
        try:
            importlib.import_module(module)
        except Exception as e:  # any failure to import is the user's module or spelling
            raise _unknown(env_id, f"module '{module}' does not import ({type(e).__name__}: {e})")
    frames_needed = record_frames and render_mode is None
    from prefrl.atari import is_atari  # light: ale-py loads only for Atari ids

    if is_atari(env_id):  # preprocessed once, there; people see the full-color screen
        from prefrl.atari import make_atari_env

        env = make_atari_env(env_id, render_mode=render_mode, record_frames=record_frames)
    else:
        env = _make_gymnasium_env(env_id, render_mode="rgb_array" if frames_needed else render_mode, **kwargs)
        if (record_states or record_frames) and is_mujoco(env):
            env = RecordSimState(env)
        elif frames_needed:
            env = RecordFrames(env)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def _make_gymnasium_env(env_id: str, render_mode: str | None, **kwargs) -> gym.Env:
    try:
        env = gym.make(env_id, render_mode=render_mode, **kwargs)
    except (gym.error.UnregisteredEnv, gym.error.DeprecatedEnv) as e:
        raise _unknown(env_id, str(e))
    except gym.error.Error as e:
        if not str(e).startswith("No registered env"):
            raise  # an error from inside the env's constructor, not from the id
        raise _unknown(env_id, str(e))
    return env


def _unknown(env_id: str, reason: str) -> UserError:
    reason = " ".join(reason.split())  # gymnasium's reasons may span lines; ours is one
    return UserError(f"unknown environment id '{env_id}': {reason}; check the spelling or use "
                     "module:Env-vN with a module that registers it")


def check_spaces(env: gym.Env) -> None:
    """Raise :class:`UserError` unless observations are a Box and actions a Box or Discrete.

    Box observations of any shape work (the reward model flattens them).
    """
    obs, act = env.observation_space, env.action_space
    if not isinstance(obs, spaces.Box):
        raise UserError(f"unsupported observation space {obs}: prefrl supports Box "
                        "observations (any shape); flatten or wrap the env to give one")
    if not isinstance(act, (spaces.Box, spaces.Discrete)):
        raise UserError(f"unsupported action space {act}: prefrl supports Box or Discrete "
                        "actions; wrap the env to give one")


def is_image_space(space: gym.Space) -> bool:
    """Pixels: a uint8 Box of 2 or more dimensions (e.g. Atari's stacked 84×84 frames)."""
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) >= 2


def is_mujoco(env: gym.Env) -> bool:
    """Whether ``env`` runs on MuJoCo (its unwrapped env has ``model`` and ``data.qpos/qvel``)."""
    base = env.unwrapped
    data = getattr(base, "data", None)
    return hasattr(base, "model") and hasattr(data, "qpos") and hasattr(data, "qvel")


def data_state(data) -> np.ndarray:
    """The state ``qpos ‖ qvel`` (float64) held in a MuJoCo ``data``: what clips keep and
    :func:`set_sim_state` puts back."""
    return np.concatenate([data.qpos, data.qvel])  # both float64 already: one copy, no cast


def get_sim_state(env: gym.Env) -> np.ndarray:
    """The MuJoCo state of ``env`` right now (see :func:`data_state`)."""
    return data_state(env.unwrapped.data)


def set_sim_state(env: gym.Env, state: np.ndarray) -> np.ndarray | None:
    """Put ``state`` (from ``info["sim_state"]``) into ``env`` to replay or render it.

    Returns the observation the env gives in that state where it can compute one
    (gymnasium's MuJoCo envs can), else ``None``. ``env.render()`` then shows the state.
    """
    import mujoco  # only reached for MuJoCo envs

    base = env.unwrapped
    nq, nv = base.model.nq, base.model.nv
    state = np.asarray(state, dtype=np.float64)
    if state.shape != (nq + nv,):
        raise ValueError(f"state has shape {state.shape}; this env needs ({nq + nv},)")
    base.data.qpos[:] = state[:nq]
    base.data.qvel[:] = state[nq:]
    mujoco.mj_forward(base.model, base.data)  # recompute positions etc. derived from qpos
    get_obs = getattr(base, "_get_obs", None)
    return get_obs() if callable(get_obs) else None


class RecordSimState(gym.Wrapper):
    """Adds ``info["sim_state"]``: the MuJoCo state that goes with the observation acted on.

    ``step`` reports the state *before* the action (the one the agent's observation came
    from), ``reset`` the state reset to, so ``obs[t]`` and ``info[t + 1]["sim_state"]``
    describe the same moment and a clip can be replayed frame by frame.
    """

    def __init__(self, env: gym.Env):
        if not is_mujoco(env):
            raise ValueError("RecordSimState needs a MuJoCo env (unwrapped.data.qpos/qvel)")
        super().__init__(env)
        self._data = env.unwrapped.data  # kept for the env's life; read on every step

    def _state(self) -> np.ndarray:
        return data_state(self._data)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        info["sim_state"] = self._state()
        return obs, info

    def step(self, action):
        state = self._state()
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["sim_state"] = state
        return obs, reward, terminated, truncated, info


class RecordFrames(gym.Wrapper):
    """Adds ``info["frame"]``: the rendered frame of the observation acted on (uint8 [H, W, 3]).

    For envs that cannot be replayed from a stored state; costs a render per step, so the
    loop uses it only when a person will look at clips.
    """

    def step(self, action):
        frame = np.asarray(self.env.render(), dtype=np.uint8)
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["frame"] = frame
        return obs, reward, terminated, truncated, info


def clip_steps(env: gym.Env, seconds: float = 1.5) -> int:
    """Default clip length in steps: ``seconds`` of simulated time, clamped to 15..60.

    Christiano et al. (2017, §2.2, A.1) use clips of 1–2 s, 15–60 steps depending on
    the task. Envs without a ``dt`` (no notion of simulated time) get 25. An env whose
    behaviour needs a set length to be seen whole says so with a ``clip_steps`` attribute.
    """
    if getattr(env.unwrapped, "clip_steps", None):
        return int(env.unwrapped.clip_steps)
    dt = getattr(env.unwrapped, "dt", None)
    if not dt:
        return 25
    return int(min(60, max(15, round(seconds / dt))))
