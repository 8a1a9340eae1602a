"""What the loop passes around: clips of experience, queries about pairs of them, answers.

A *clip* is a short piece of one episode (Christiano et al. 2017, §2.2: 1–2 s of
simulated time). It keeps what the reward model needs (observations and actions), the
true reward (only ever read by synthetic oracles and evaluation, never by the agent), and
what a labeling process needs to show it later without the training process rendering
anything (MuJoCo: simulator state per step).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

ANSWERS = ("left", "right", "equal", "incomparable")
"""Answers a labeler can give (§2.2): a preferred side, a tie, or "can't tell"."""

_PREFERENCE = {"left": 1.0, "right": 0.0, "equal": 0.5}


def answer_to_preference(answer: str) -> float | None:
    """P[left ≻ right] a given answer stands for; ``None`` for answers dropped from training.

    Ties train as 0.5/0.5 and "incomparable" answers are dropped (§2.2).
    """
    if answer not in ANSWERS:
        raise ValueError(f"unknown answer {answer!r}; expected one of {ANSWERS}")
    return _PREFERENCE.get(answer)


@dataclass(frozen=True, eq=False)
class Clip:
    """A fixed-length piece of one episode.

    Attributes:
        obs: float32 ``[T, obs_dim]``, the observation *before* each action.
        acts: float32 ``[T, act_dim]``, the action taken (one-hot for discrete spaces).
        rewards: float32 ``[T]``, the environment's true reward; 0 on padded steps.
        length: number of real steps. An episode that ended after ``length < T`` steps is
            padded by repeating its final observation with a zero action: the padded steps
            stand for "the episode is over", so the reward model can learn what ending
            early is worth instead of the loop refusing short episodes.
        states: float64 ``[T, state_dim]`` simulator state per step (MuJoCo ``qpos‖qvel``)
            to replay the clip in another process, or ``None`` where the env has none.
        frames: uint8 ``[T, H, W, 3]`` rendered frames where the env cannot be replayed
            from states (filled only when a human will look at clips), or ``None``.
        env_id: the gymnasium id the clip came from.
    """

    obs: np.ndarray
    acts: np.ndarray
    rewards: np.ndarray
    length: int
    states: np.ndarray | None = None
    frames: np.ndarray | None = None
    env_id: str = ""

    def __post_init__(self):
        steps = len(self.obs)
        if not (len(self.acts) == len(self.rewards) == steps):
            raise ValueError("obs, acts and rewards of a clip must have the same length")
        if not 0 < self.length <= steps:
            raise ValueError(f"clip length {self.length} outside 1..{steps}")

    @property
    def steps(self) -> int:
        """T, the number of steps including padding."""
        return len(self.obs)

    @property
    def true_return(self) -> float:
        """Sum of the true reward over the clip's real steps."""
        return float(self.rewards[: self.length].sum())

    def to_bytes(self) -> bytes:
        """Serialize to a compressed ``.npz`` blob (for the preference store)."""
        arrays = {"obs": self.obs, "acts": self.acts, "rewards": self.rewards,
                  "length": np.asarray(self.length), "env_id": np.asarray(self.env_id)}
        if self.states is not None:
            arrays["states"] = self.states
        if self.frames is not None:
            arrays["frames"] = self.frames
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Clip:
        """Inverse of :meth:`to_bytes`."""
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            return cls(obs=data["obs"], acts=data["acts"], rewards=data["rewards"],
                       length=int(data["length"]), env_id=str(data["env_id"]),
                       states=data["states"] if "states" in data else None,
                       frames=data["frames"] if "frames" in data else None)


@dataclass(frozen=True)
class Query:
    """A question put to labelers: which of two stored clips is better?

    Attributes:
        id: the query's row id in the preference store.
        left_id, right_id: row ids of the two clips in the store.
        score: the selector's score when the query was made (higher = more disputed).
    """

    id: int
    left_id: int
    right_id: int
    score: float = 0.0


@dataclass(frozen=True)
class Label:
    """One recorded answer to a query.

    Attributes:
        query_id: the query answered.
        answer: one of :data:`ANSWERS`.
        source: who answered, e.g. ``"oracle:perfect"`` or ``"human"``.
        labeler: a name for the labeling process or person.
        response_time: seconds from showing the query to the answer (0 for oracles).
    """

    query_id: int
    answer: str
    source: str
    labeler: str = ""
    response_time: float = 0.0
