"""Atari games for learning from preferences: env construction, score blanking, settings.

Christiano et al. 2017 §3.1.2 and A.2 train Atari agents on preprocessed frames (the
standard DQN preprocessing: frame skip 4, 84×84 grayscale, a stack of 4 frames) and blank
out the game score in what the reward predictor sees, so that it must learn the reward
from the game itself rather than read it off the screen. A person comparing clips,
though, is shown the game as they know it: :class:`RecordScreen` keeps the full RGB screen.

ale-py is optional (``pip install 'prefrl[atari]'``) and imported only when an Atari env is
made, never at ``import prefrl``.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from prefrl.errors import UserError

FRAME_SIZE = 84  # side of the preprocessed square frame (rows and columns)
STACK = 4  # frames per observation: obs are uint8 [STACK, FRAME_SIZE, FRAME_SIZE]

# Rows [start, stop) of the 84×84 preprocessed frame that show the score. The frame is the
# whole 210×160 screen resized (2.5 screen rows per row), so these are not screen rows.
# Measured on real frames: random play, and at each reward the rows whose otherwise static
# pixels changed, checked against the rows the digits occupy (tests/test_atari.py repeats
# the check for Pong and Breakout). Where the game shows other reward counters next to the
# score, they go too: BeamRider's sector and enemies-left rows, Enduro's whole dashboard
# (odometer, day, cars left to pass; the cars counter moves with every reward).
SCORE_AREAS: dict[str, tuple[int, int]] = {
    "Pong": (0, 9),            # both scores; the top wall starts at row 9
    "Breakout": (0, 7),        # score, lives, player; the top wall starts at row 7
    "Enduro": (64, 77),        # dashboard at the bottom; the logo below it is static
    "SpaceInvaders": (0, 8),   # both players' scores
    "Seaquest": (0, 7),        # score; the sea surface starts at row 7
    "BeamRider": (0, 16),      # score, sector, enemies left; the beams start at row 17
    "Qbert": (0, 6),           # score; the lives/target-colour icons below it stay
}
DEFAULT_SCORE_ROWS = (0, FRAME_SIZE // 10)  # unknown games: the top 10% (8 rows), where most games put the score

# Usual PPO settings for Atari (rl-baselines3-zoo, after Schulman et al. 2017), as keyword
# arguments; n_envs is the number of parallel environments, not a PPO argument.
ATARI_PPO: dict = dict(n_envs=8, n_steps=128, n_epochs=4, batch_size=256, learning_rate=2.5e-4,
                       clip_range=0.1, ent_coef=0.01, vf_coef=0.5)

# The paper's Atari label schedule (A.2): 500 labels from a random policy before training
# starts, labels spread over 5e6 agent steps (the rate decaying as in MuJoCo), clips of
# 25 agent steps (1.7 s at 15 fps after the frame skip), and at most 3000 labels kept.
ATARI_INITIAL_LABELS = 500
ATARI_HORIZON = 5_000_000
ATARI_CLIP_STEPS = 25
ATARI_LABEL_CAP = 3000


def is_atari(env_id) -> bool:
    """Whether ``env_id`` names an ALE game (``"ALE/Pong-v5"``); decided from the string alone."""
    return isinstance(env_id, str) and env_id.startswith("ALE/")


def game_name(env_id: str) -> str:
    """``"ALE/Pong-v5"`` → ``"Pong"`` (the key into :data:`SCORE_AREAS`)."""
    return env_id.partition("/")[2].rpartition("-v")[0]


def make_atari_env(env_id: str, render_mode: str | None = None, record_frames: bool = False) -> gym.Env:
    """An ALE game preprocessed as in Christiano et al. 2017 A.2 (the DQN preprocessing).

    ``gym.make(env_id, frameskip=1)`` (so the ALE itself does not skip frames; v5's sticky
    actions stay on), then SB3's ``AtariWrapper``: up to 30 no-ops at reset, each action
    repeated 4 frames with the last two max-pooled, 84×84 grayscale. Life loss does not end
    the episode and rewards are not clipped, so the env's reward stays the game score (the
    true reward we evaluate with). Last, a stack of 4 frames: obs are uint8 ``[4, 84, 84]``.
    With ``record_frames``, :class:`RecordScreen` adds the RGB screen as ``info["frame"]``.

    Raises:
        UserError: ale-py is missing, or the game id is unknown / its ROM is missing.
    """
    try:
        import ale_py
    except ImportError:
        raise UserError("Atari needs ale-py: pip install 'prefrl[atari]'") from None
    from stable_baselines3.common.atari_wrappers import AtariWrapper

    gym.register_envs(ale_py)
    try:
        env = gym.make(env_id, frameskip=1, render_mode=render_mode)
    except gym.error.Error as e:
        raise UserError(f"unknown Atari game '{env_id}': {' '.join(str(e).split())}; use an id "
                        "like ALE/Pong-v5 (ROMs ship with ale-py>=0.9: pip install -U ale-py)") from None
    except Exception as e:  # a ROM that does not load surfaces from the ALE's constructor
        raise UserError(f"cannot load the ROM for '{env_id}' ({type(e).__name__}: "
                        f"{' '.join(str(e).split())}); reinstall ale-py>=0.9, which ships the ROMs") from None
    env = AtariWrapper(env, terminal_on_life_loss=False, clip_reward=False)
    # WarpFrame gives [84, 84, 1]; drop the channel so the stack is channel-first [4, 84, 84].
    env = gym.wrappers.ReshapeObservation(env, (FRAME_SIZE, FRAME_SIZE))
    env = gym.wrappers.FrameStackObservation(env, STACK)
    if record_frames:
        env = RecordScreen(env)
    return env  # seeded, like every env, by prefrl.environment.make_env


def score_rows(game: str) -> tuple[int, int]:
    """Rows ``[start, stop)`` of the 84×84 frame to blank for ``game`` (default: top 10%)."""
    return SCORE_AREAS.get(game, DEFAULT_SCORE_ROWS)


def blank_score(obs, game: str):
    """Zero the score rows of frames ``obs [..., 84, 84]`` (NumPy array or torch tensor); returns a copy.

    §3.1.2: the reward predictor must not see the score, or it would learn to read it.
    """
    start, stop = score_rows(game)
    out = obs.copy() if isinstance(obs, np.ndarray) else obs.clone()
    out[..., start:stop, :] = 0
    return out


class RecordScreen(gym.Wrapper):
    """Adds ``info["frame"]``: the ALE's RGB screen (uint8 [210, 160, 3]) of the observation acted on.

    The labeler sees the game in colour and at full resolution, not the 84×84 gray the agent
    gets. Reads the ALE's screen buffer: no render call, so it is cheap enough for every step.
    ``step`` reports the screen *before* the action (the last frame of the observation acted
    on), ``reset`` the screen reset to, as :class:`prefrl.environment.RecordFrames` does.
    """

    def _screen(self) -> np.ndarray:
        return self.env.unwrapped.ale.getScreenRGB()

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        info["frame"] = self._screen()
        return obs, info

    def step(self, action):
        frame = self._screen()
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["frame"] = frame
        return obs, reward, terminated, truncated, info
