"""The Hopper backflip: a behaviour with no reward function, taught from preferences.

Christiano et al. 2017 (§3.2) teach a Hopper to do backflips from about 900 human
queries in under an hour, a behaviour for which writing a reward is hard. This module
gives that task a measurable form so runs can be scripted and scored:

* :class:`HopperBackflipEnv`, a Hopper-v5 that never ends an episode for falling (it
  must be free to go upside down) and whose *true* reward measures backflipping. In a
  preference run the agent never sees it; only evaluation and the ``perfect`` oracle do.
* :func:`torso_rotation`, :func:`is_full_backflip`, :func:`count_backflips`: the success
  test on recorded ``[T, nq+nv]`` states (:class:`prefrl.clips.Clip` ``states``).
* :class:`BackflipJudge`, a scripted labeler that answers queries like a person asked
  "which one is more of a backflip?", and :func:`evaluate_backflips`.

Sign convention (checked in ``tests/test_backflip.py``). Hopper's ``qpos`` is
``[rootx, rootz, rooty, thigh, leg, foot]``; ``rooty = qpos[2]`` is a hinge about +y. By
the right-hand rule a positive ``rooty`` turns +z towards +x, so it tips the top of the
torso towards +x, which is *forward*: the foot's toe points along +x and Hopper's own
reward pays for +x velocity. Setting ``qpos[2] = +0.3`` moves the torso's top by +0.06 in
x relative to its centre; ``-0.3`` by -0.06. A **backward** rotation (head goes back, then
under) therefore *decreases* ``qpos[2]``: backward rotation is ``-Δqpos[2]`` and the
backward angular velocity is ``-qvel[2]``. The hinge is unlimited and not wrapped, so
``qpos[2]`` keeps counting past ±2π.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

ANGLE, HEIGHT = 2, 1
"""Indices into a Hopper state ``qpos‖qvel``: root pitch (``rooty``) and torso height (``rootz``)."""

TURN = 2 * math.pi

UPRIGHT_TOL = 0.35
"""Radians (~20°) the torso may lean from vertical and still count as upright. Hopper's own
health check allows ±0.2; a landing wobbles more than standing does."""

MIN_HEIGHT = 0.7
"""Torso height (``qpos[1]``) above which the hopper is standing, Hopper's healthy ``z`` floor."""

STAND_HEIGHT = 1.25
"""Torso height (``qpos[1]``) of Hopper standing at reset."""

MIN_UPRIGHT_STEPS = 10
"""Consecutive upright steps that make a landing (10 × 8 ms = 0.08 s): one upright frame
mid-air on the way round is not a landing."""


def torso_rotation(states: np.ndarray) -> np.ndarray:
    """Cumulative backward rotation of the torso, in radians, at each step.

    Args:
        states: ``[T, nq+nv]`` Hopper states (``qpos‖qvel``), ``T >= 1``.

    Returns:
        float64 ``[T]``: ``-(θ_t - θ_0)`` with ``θ = qpos[2]``, so entry 0 is 0, a full
        backward turn adds ``2π`` and forward rotation counts negative. Angles are
        unwrapped first, so states whose angle was wrapped to ``(-π, π]`` work too.
    """
    angle = np.unwrap(_angles(states))
    return -(angle - angle[0])


def _angles(states: np.ndarray) -> np.ndarray:
    states = np.asarray(states, dtype=np.float64)
    if states.ndim != 2 or states.shape[0] == 0 or states.shape[1] <= ANGLE:
        raise ValueError(f"expected Hopper states [T, nq+nv] with T >= 1, got shape {states.shape}")
    return states[:, ANGLE]


def lean(angle) -> np.ndarray:
    """The torso's angle from vertical in ``[0, π]``, any number of turns round (elementwise)."""
    return np.abs(np.remainder(np.asarray(angle, dtype=np.float64) + math.pi, TURN) - math.pi)


def is_upright(angle, height) -> np.ndarray:
    """Whether the torso is within :data:`UPRIGHT_TOL` of vertical (any number of turns
    round) and at least :data:`MIN_HEIGHT` high. Works elementwise on arrays."""
    return (lean(angle) < UPRIGHT_TOL) & (np.asarray(height) > MIN_HEIGHT)


MAX_FLIP_STEPS = 188
"""Steps from leaving a stance to the first upright step of the landing, at most: 1.5 s at
Hopper's 8 ms step. A flip is one quick movement, not a tumble that ends upright."""


class FlipCounter:
    """Counts landed backflips one step at a time; the single definition of success.

    A flip is measured from a **stance**: the last step at which the hopper was upright
    (:func:`is_upright`) without having just turned over (at reset it stands), taken as
    the whole number of turns it stood at. It is
    **landed** at the step where the hopper has been upright for :data:`MIN_UPRIGHT_STEPS`
    consecutive steps, each of them with backward rotation since the stance of at least
    ``2π - UPRIGHT_TOL`` (the ``- UPRIGHT_TOL`` makes the turn test agree with the upright
    test), and the first of them at most :data:`MAX_FLIP_STEPS` (1.5 s) after the stance.
    The landing is the stance for the next flip, so standing on never counts twice.

    So rotation has to be done in one go: a hopper that turns part of the way, stands,
    and turns on does not add the parts up, and one that tumbles back and forth on the
    ground for seconds until it happens to stand up has not flipped. (An earlier test
    counted cumulative rotation since reset; agents passed it that way, see
    ``benchmarks/results/backflip-v3``.) A quick backward roll over the ground that ends
    on the foot still passes: the states say nothing of what touched the floor.

    After each :meth:`update`, ``turn`` is the rotation since the stance and
    ``landing`` whether that step counts toward a landing.
    """

    def __init__(self, reference: float = 0.0):
        self.flips = 0
        self.turn, self.landing = 0.0, False
        self._stance = reference  # rotation at the stance a flip is measured from
        self._away = 0  # steps since the stance
        self._run = 0  # consecutive landing steps so far

    def update(self, rotation: float, angle: float, height: float) -> bool:
        """Feed one step; ``True`` when this step completes a landed flip."""
        self.turn = rotation - self._stance
        upright = bool(is_upright(angle, height))
        self.landing = (upright and self.turn >= TURN - UPRIGHT_TOL
                        and self._away - self._run <= MAX_FLIP_STEPS)
        if not self.landing:
            self._run = 0
            if upright:  # standing: the next flip is measured from here
                self._stance, self._away = _whole_turns(rotation), 0
            else:
                self._away += 1
            return False
        self._run, self._away = self._run + 1, self._away + 1
        if self._run < MIN_UPRIGHT_STEPS:
            return False
        self.flips += 1
        self._stance, self._away, self._run = _whole_turns(rotation), 0, 0
        return True


def _whole_turns(rotation: float) -> float:
    """The upright orientation a standing hopper is in: its rotation rounded to whole turns,
    so leaning back on the way into a flip, or forward into a landing, moves no stance."""
    return TURN * round(rotation / TURN)


def flip_trace(rotation, angle, height) -> tuple[np.ndarray, np.ndarray, int]:
    """Run :class:`FlipCounter` over a sequence of steps (backward rotation, root angle,
    torso height). Returns each step's rotation since the stance, whether it counts toward
    a landing, and the flips landed."""
    counter, turns, landing = FlipCounter(), [], []
    for rot, a, h in zip(rotation, angle, height):
        counter.update(rot, a, h)
        turns.append(counter.turn)
        landing.append(counter.landing)
    return np.array(turns), np.array(landing, dtype=bool), counter.flips


def count_backflips(states: np.ndarray) -> int:
    """Landed backflips in ``[T, nq+nv]`` states of one episode (see :class:`FlipCounter`)."""
    states = np.asarray(states, dtype=np.float64)
    return flip_trace(torso_rotation(states), states[:, ANGLE], states[:, HEIGHT])[2]


def is_full_backflip(states: np.ndarray) -> bool:
    """The success test: did this episode contain at least one landed backflip?

    True iff, within ``states`` (``[T, nq+nv]``, one episode from its start), the hopper,
    from standing upright, turns a full backward circle (``2π - UPRIGHT_TOL``) and is
    upright again — torso within 0.35 rad of vertical and higher than 0.7 — for 10
    consecutive steps, the first of them at most 1.5 s after it last stood
    (:class:`FlipCounter`). Half a flip, a full turn that ends lying down, and a long
    tumble that ends upright are not one.
    """
    return count_backflips(states) >= 1


class HopperBackflipEnv(HopperEnv):
    """Hopper-v5 without termination whose true reward is for backflips (§3.2).

    Per step: ``reward = rotation + landing - ctrl_cost`` where

    * ``rotation`` = backward rotation this step / dt, the backward angular velocity in
      rad/s (forward rotation pays negative), as Hopper's own reward is x-velocity in m/s;
    * ``landing`` = ``landing_bonus`` once, at the step a flip is landed
      (:class:`FlipCounter`). Default 800 ≈ what one turn's spinning pays (2π/dt ≈ 785),
      so a landed flip is worth twice a turn that ends on the floor: spinning alone is
      not the task;
    * ``ctrl_cost`` is Hopper's (``1e-3 · |a|²``).

    Hopper's forward and healthy rewards are dropped: travelling is not the task, and
    "healthy" (upright, |angle| < 0.2) is exactly what a flip has to leave. Episodes never
    terminate (the hopper must be allowed upside down and to fall) and are truncated at
    1000 steps (8 s, room for several flips) by the registration.
    ``info`` gains ``reward_rotation``, ``reward_landing``, ``rotation`` and ``backflips``.
    """

    clip_steps = 125
    """Clip length (1.0 s), longer than Hopper's default 60 (0.48 s): throwing back, turning
    and landing take about 1 s, so one clip can show a whole flip to the judge or a person.
    Measured: 1-s clips landed the first flip after 390 answers; see the README."""

    def __init__(self, landing_bonus: float = 800.0, **kwargs):
        kwargs.pop("terminate_when_unhealthy", None)
        super().__init__(terminate_when_unhealthy=False, **kwargs)
        self.landing_bonus = float(landing_bonus)
        # Re-record the constructor args so pickling/copying keeps landing_bonus.
        utils.EzPickle.__init__(self, landing_bonus=landing_bonus, **kwargs)
        self._rotation, self._flips = 0.0, FlipCounter()

    def reset_model(self):
        self._rotation, self._flips = 0.0, FlipCounter()
        return super().reset_model()

    def step(self, action):
        before = float(self.data.qpos[ANGLE])
        obs, _, terminated, truncated, info = super().step(action)
        angle, height = float(self.data.qpos[ANGLE]), float(self.data.qpos[HEIGHT])
        turned = -(angle - before)  # backward is decreasing rooty (module doc)
        self._rotation += turned
        landed = self._flips.update(self._rotation, angle, height)
        info["reward_rotation"] = turned / self.dt
        info["reward_landing"] = self.landing_bonus * landed
        info["rotation"] = self._rotation
        info["backflips"] = self._flips.flips
        reward = info["reward_rotation"] + info["reward_landing"] + info["reward_ctrl"]  # reward_ctrl <= 0
        return obs, reward, terminated, truncated, info


class BackflipJudge:
    """A scripted labeler for the backflip task, interchangeable with the simulated teachers.

    It answers "which one is more of a backflip?" the way a person watching two short clips
    would, comparing, in order (each on the clip's real steps ``states[:length]``; rotation
    is backward rotation since the hopper last stood, read off the unwrapped root angle;
    before the clip shows a stance, since the reset, whose angle is ~0):

    1. **Landed**: steps that count toward a landing by the success test
       (:class:`FlipCounter`: upright after a full backward turn since the last stance,
       within 1.5 s of it). Standing after a flip is what the task is; the clip with
       ``landed_margin`` more such steps wins.
    2. **Progress toward a landed flip**: the best point of the clip on one scale,
       :func:`flip_progress`: backward rotation up to a full turn, then, once the turn is
       done, how near to standing the hopper got (torso lean and height). More by
       ``margin`` wins. A hopper on its back after a turn is further along than one half
       way round, and one getting to its foot further than one spinning on.
    3. **How it ends**: upright beats not, then the higher torso; identical → ``"equal"``.

    Earlier versions ranked the clip's own rotation second. The first (raw rotation
    first) taught agents to turn 1.4 times and lie on their backs
    (``benchmarks/results/backflip``); the second (landed steps, then the clip's rotation
    toward the next whole turn) taught them to keep spinning on the ground, past 15 rad,
    without landing (``benchmarks/results/backflip-v2``): a clip that rotates scores by
    its rotation, whatever state it is in. It never answers ``"incomparable"`` and is
    deterministic; ``rng`` is kept because the loop saves and restores every oracle's
    generator.

    Raises ``ValueError`` for clips without simulator states (``Clip.states is None``).
    """

    name = "backflip"

    def __init__(self, seed: int = 0, margin: float = 0.25, landed_margin: int = 5):
        self.rng = np.random.default_rng(seed)
        self.margin, self.landed_margin = float(margin), int(landed_margin)

    def __repr__(self) -> str:
        return f"BackflipJudge(margin={self.margin}, landed_margin={self.landed_margin})"

    def __call__(self, left: Sequence, right: Sequence) -> list[str]:
        """One of ``"left"``, ``"right"``, ``"equal"`` per pair ``(left[i], right[i])``."""
        if len(left) != len(right):
            raise ValueError(f"{len(left)} left clips but {len(right)} right clips")
        return [self._judge(self._features(a), self._features(b)) for a, b in zip(left, right)]

    def _judge(self, a: tuple, b: tuple) -> str:
        (landed_a, rot_a, *end_a), (landed_b, rot_b, *end_b) = a, b
        if abs(landed_a - landed_b) >= self.landed_margin:
            return "left" if landed_a > landed_b else "right"
        if abs(rot_a - rot_b) > self.margin:
            return "left" if rot_a > rot_b else "right"
        if end_a == end_b:
            return "equal"
        return "left" if end_a > end_b else "right"  # (upright, height), lexicographic

    @staticmethod
    def _features(clip) -> tuple[int, float, bool, float]:
        """(upright steps after a full turn, best flip progress, ends upright, final height)."""
        if clip.states is None:
            raise ValueError("BackflipJudge needs clips with simulator states (Clip.states is None): "
                             "record them with make_env(..., record_states=True)")
        states = np.asarray(clip.states[: clip.length], dtype=np.float64)
        angle = np.unwrap(_angles(states))
        # A clip starts mid-episode: the stance before it is unknown, so the reset's (0)
        # stands in until the clip shows the hopper standing.
        turns, landing, _ = flip_trace(-angle, angle, states[:, HEIGHT])
        upright = is_upright(angle, states[:, HEIGHT])
        landed = int(np.sum(landing))
        progress = float(flip_progress(turns, angle, states[:, HEIGHT]).max())
        return landed, progress, bool(upright[-1]), float(states[-1, HEIGHT])


def flip_progress(turned, angle, height) -> np.ndarray:
    """How far along a first landed backflip each step is, on one scale (elementwise).

    ``turned`` is the backward rotation (radians) since the hopper last stood. Up to a full turn
    (``2π - UPRIGHT_TOL``) the progress is the rotation itself; past it, a posture score
    in ``[0, 2]`` is added: ``1 - lean/π`` (:func:`lean`) plus the torso height as a share
    of standing height (1.25, capped at 1).
    Standing after a turn scores about ``2π + 1.65``; lying on the back after one about
    ``2π + 0.4``; a half turn ``π``. Further turns add nothing: the task is one flip.
    """
    turned, height = np.asarray(turned, dtype=np.float64), np.asarray(height, dtype=np.float64)
    done = turned >= TURN - UPRIGHT_TOL
    posture = (1.0 - lean(angle) / math.pi) + np.clip(height / STAND_HEIGHT, 0.0, 1.0)
    return np.minimum(turned, TURN - UPRIGHT_TOL) + done * posture


def evaluate_backflips(policy, episodes: int = 5, seed: int = 0,
                       env_id: str = "prefrl/HopperBackflip-v0") -> dict:
    """Run ``episodes`` deterministic episodes of ``policy`` (anything with SB3's
    ``predict``) and score them with the success test.

    Returns ``{"episodes", "full_backflips"`` (episodes passing :func:`is_full_backflip`),
    ``"backflips"`` (landed flips, all episodes), ``"max_rotation"`` (largest cumulative
    backward rotation reached in any episode, radians), ``"rotations"`` (per-episode net
    rotation), ``"true_return_mean"}``.
    """
    from prefrl.environment import get_sim_state, make_env

    env = make_env(env_id, record_states=False)
    full = flips = 0
    max_rotation, rotations, returns = -math.inf, [], []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + 10_000 + i)  # the same seeds as prefrl.evaluation
            states, total, done = [get_sim_state(env)], 0.0, False
            while not done:
                action, _ = policy.predict(obs, deterministic=True)
                obs, reward, terminated, truncated, _ = env.step(action)
                states.append(get_sim_state(env))
                total, done = total + float(reward), terminated or truncated
            states = np.stack(states)  # [T+1, nq+nv]: the reset state and after every step
            rotation = torso_rotation(states)
            n = count_backflips(states)
            full, flips = full + (n >= 1), flips + n
            max_rotation = max(max_rotation, float(rotation.max()))
            rotations.append(float(rotation[-1]))
            returns.append(total)
    finally:
        env.close()
    return {"episodes": episodes, "full_backflips": int(full), "backflips": int(flips),
            "max_rotation": max_rotation if episodes else float("nan"), "rotations": rotations,
            "true_return_mean": float(np.mean(returns)) if returns else float("nan")}
