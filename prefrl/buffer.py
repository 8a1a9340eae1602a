"""Recent experience, kept per episode, cut into clips when the selector asks for candidates."""
from __future__ import annotations

from collections import deque

import numpy as np

from prefrl.clips import Clip


class _Episode:
    __slots__ = ("obs", "acts", "rewards", "states", "frames", "terminated", "_arrays")

    def __init__(self):
        self.obs, self.acts, self.rewards, self.states, self.frames = [], [], [], [], []
        self.terminated = False  # ended by the env itself: not by a time limit, a reset, or not yet
        self._arrays = None

    def __len__(self) -> int:
        return len(self.obs)

    def arrays(self):
        if self._arrays is None or len(self._arrays[0]) != len(self.obs):
            states = np.asarray(self.states) if self.states and self.states[0] is not None else None
            frames = np.asarray(self.frames, np.uint8) if self.frames and self.frames[0] is not None else None
            self._arrays = (np.asarray(self.obs), np.asarray(self.acts, np.float32),
                            np.asarray(self.rewards, np.float32), states, frames)
        return self._arrays


class TrajectoryBuffer:
    """The last ``capacity`` steps of experience from ``n_envs`` parallel environments.

    Episodes of any length are kept: one that terminated before a clip's length becomes a
    padded clip (see :class:`~prefrl.clips.Clip`), so an agent that learns to end episodes
    early (a Hopper that falls in 10 steps) never leaves the loop without clips to ask
    about. Padding says "the episode is over", so pieces shorter than a clip that did *not*
    terminate (cut by a time limit or a reset, or still running) are not cut into clips,
    unless nothing else is there (an env whose time limit is shorter than a clip).

    Windows of a terminated episode may also run past its end by up to half a clip, padded
    the same way. Otherwise, once the agent outlives a clip, no clip shows an ending, and
    what ending costs rests on the first labels' easy calls (a fall against a hop), which fix
    its sign but not its size: on Hopper-v5 the learned reward then put a step 0.81× as far
    above the episode's end as the true reward does, and agents fell sooner. With these
    windows it was 0.99–1.00× on seed 3, and the Hopper ratio over five seeds rose from 0.76
    to 0.80 (``benchmarks/results/hopper-ended-windows/``, which also has seed 4's stuck member).

    Args:
        n_envs: parallel environments feeding :meth:`add`.
        clip_steps: T, the length of the clips handed out.
        capacity: steps kept; the oldest finished episodes are dropped first.
        env_id: recorded in each clip.
        frame_bytes: memory for recorded frames (only when a person labels): fewer steps are
            kept when frames are large (an Atari screen is 100 KB).
    """

    def __init__(self, n_envs: int, clip_steps: int, capacity: int = 100_000, env_id: str = "",
                 frame_bytes: int = 1 << 30):
        self.clip_steps, self.capacity, self.env_id = clip_steps, capacity, env_id
        self.overrun = clip_steps // 2  # steps a window may run past a termination (class doc)
        self.frame_bytes = frame_bytes
        self._open = [_Episode() for _ in range(n_envs)]
        self._done: deque[_Episode] = deque()
        self._done_steps = 0

    def __len__(self) -> int:
        return self._done_steps + sum(len(e) for e in self._open)

    def add(self, obs: np.ndarray, acts: np.ndarray, rewards: np.ndarray, dones: np.ndarray,
            states: list[np.ndarray | None] | None = None,
            frames: list[np.ndarray | None] | None = None, truncated: np.ndarray | None = None) -> None:
        """Record one vectorized step: ``obs [n_envs, obs_dim]`` acted on with ``acts [n_envs, act_dim]``.

        ``states``/``frames``: per env, the simulator state or rendered frame of ``obs``.
        ``truncated [n_envs]``: which ``dones`` were a time limit rather than a termination.
        """
        if frames is not None and self.capacity * frames[0].nbytes > self.frame_bytes:
            self.capacity = max(4 * self.clip_steps, self.frame_bytes // frames[0].nbytes)
        for i, episode in enumerate(self._open):
            episode.obs.append(obs[i])
            episode.acts.append(acts[i])
            episode.rewards.append(rewards[i])
            episode.states.append(None if states is None else states[i])
            episode.frames.append(None if frames is None else frames[i])
            if dones[i]:
                episode.terminated = truncated is None or not truncated[i]
                self._done.append(episode)
                self._done_steps += len(episode)
                self._open[i] = _Episode()
        while self._done and len(self) > self.capacity:
            self._done_steps -= len(self._done.popleft())

    def end_episodes(self) -> None:
        """Close every open episode (the environments were reset without a ``done``)."""
        for i, episode in enumerate(self._open):
            if len(episode):
                self._done.append(episode)
                self._done_steps += len(episode)
                self._open[i] = _Episode()

    def _episodes(self) -> list[_Episode]:
        return [e for e in list(self._done) + self._open if len(e)]

    def sample_clips(self, n: int, rng: np.random.Generator) -> list[Clip]:
        """``n`` clips drawn uniformly over all windows of ``clip_steps`` in stored episodes
        (for a terminated episode, also those running past its end: see the class doc)."""
        episodes = self._episodes()
        if not episodes:
            raise RuntimeError("no experience collected yet; step the environment before asking for clips")
        whole = [e for e in episodes if len(e) >= self.clip_steps or e.terminated]
        episodes = whole or episodes
        windows = np.array([max(1, len(e) - self.clip_steps + 1 + self.overrun * e.terminated)
                            for e in episodes], dtype=float)
        picks = rng.choice(len(episodes), size=n, p=windows / windows.sum())
        return [self._cut(episodes[i], int(rng.integers(windows[i]))) for i in picks]

    def _cut(self, episode: _Episode, start: int) -> Clip:
        obs, acts, rewards, states, frames = episode.arrays()
        end = min(start + self.clip_steps, len(obs))
        length = end - start
        pad = self.clip_steps - length

        def window(x, fill_last):
            x = x[start:end]
            if pad == 0:
                return x
            tail = np.repeat(x[-1:], pad, axis=0) if fill_last else np.zeros((pad,) + x.shape[1:], x.dtype)
            return np.concatenate([x, tail])

        return Clip(obs=window(obs, True), acts=window(acts, False), rewards=window(rewards, False),
                    length=length, states=None if states is None else window(states, True),
                    frames=None if frames is None else window(frames, True), env_id=self.env_id)

    def sample_steps(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` random single steps: ``(obs [n, *obs_shape], acts [n, act_dim])``, e.g. to normalize rewards."""
        episodes = self._episodes()
        lengths = np.array([len(e) for e in episodes], dtype=float)
        picks = rng.choice(len(episodes), size=n, p=lengths / lengths.sum())
        rows = [(episodes[i].obs[j], episodes[i].acts[j])
                for i in picks for j in [int(rng.integers(len(episodes[i])))]]
        return np.asarray([r[0] for r in rows]), np.asarray([r[1] for r in rows], np.float32)
