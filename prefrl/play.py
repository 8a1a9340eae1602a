"""Watch a run's policy: in a window in real time, or written to a video file.

Christiano et al. 2017 (§3.2) judge novel behaviours such as the Hopper backflip by
looking at them; this is the way to look. The window needs pygame and a display; a video
needs imageio (and imageio-ffmpeg for .mp4). Both are imported only when used.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from prefrl import rundir
from prefrl.environment import make_env
from prefrl.display import require_display
from prefrl.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".gif")

GIF_MAX_FPS = 50
"""GIF frame delays are whole centiseconds and viewers slow down delays under 2 cs, so a
GIF keeps every k-th frame (:func:`_gif_stride`) to stay at or under 50 fps and still
play in real time. Pillow also merges identical consecutive frames, summing their delays."""

WINDOW_MIN_SIDE = 256
"""Small frames (the toy envs render 64×64) are scaled up in the window to at least this."""


def play(run_dir, video: str | os.PathLike | None = None, episodes: int = 1, seed: int = 0,
         deterministic: bool = True, max_frames: int | None = None) -> dict:
    """Run the policy of ``run_dir`` for ``episodes`` episodes and show or record them.

    Args:
        run_dir: a folder made by ``prefrl train``. Its ``policy.zip`` is used, else the
            latest checkpoint's.
        video: a ``.mp4`` or ``.gif`` path to write, or ``None`` to show a pygame window
            (q, Esc or closing it stops).
        episodes: episodes to play, seeded ``seed, seed + 1, ...``.
        deterministic: the policy's mean action rather than a sample.
        max_frames: stop after this many frames (for tests and quick looks).

    Frames are rendered after reset and after every step, ``[H, W, 3]`` uint8 each, at the
    env's simulated-time rate (``1/dt``, else its ``render_fps``), so playback is real time.

    Returns:
        ``{"episodes": played (a partly played one counts), "frames": frames rendered,
        "video": the path written or None, "fps": playback rate}``.

    Raises:
        UserError: unsupported video suffix, not a run, no policy yet, no display.
    """
    if episodes < 1:
        raise UserError(f"episodes must be a positive number (got {episodes})")
    if video is not None:
        video = Path(video)
        if video.suffix.lower() not in VIDEO_SUFFIXES:
            raise UserError(f"cannot write video {video}: use a file ending in .mp4 or .gif")
    else:
        require_display(_NO_DISPLAY)  # before loading anything: fail fast with what to do
    run = rundir.read_run(Path(run_dir))
    policy = _load_policy(Path(run_dir))
    env = make_env(run["config"]["env"], render_mode="rgb_array", record_states=False)
    try:
        fps = _fps(env)
        frames = _Frames(env, policy, episodes, seed, deterministic, max_frames)
        sink = _VideoSink(video, fps) if video is not None else _Window(fps)
        try:
            for frame in frames:
                if not sink.show(frame):
                    break
        finally:
            sink.close()
    finally:
        env.close()
    return {"episodes": frames.episodes, "frames": sink.frames,
            "video": str(video) if video is not None else None, "fps": fps}


def _load_policy(run_dir: Path):
    from stable_baselines3 import PPO

    return PPO.load(rundir.policy_path(run_dir), device="cpu")


def _fps(env) -> float:
    """Real-time playback rate: one frame per env step of simulated time."""
    dt = getattr(env.unwrapped, "dt", None)
    if dt:
        return 1.0 / float(dt)
    return float(env.metadata.get("render_fps") or 30)


class _Frames:
    """Iterator over rendered frames of ``episodes`` episodes; counts episodes started."""

    def __init__(self, env, policy, episodes, seed, deterministic, max_frames):
        self.episodes = 0
        self._gen = self._run(env, policy, episodes, seed, deterministic, max_frames)

    def __iter__(self):
        return self._gen

    def _run(self, env, policy, episodes, seed, deterministic, max_frames):
        shown = 0
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            self.episodes += 1
            done = False
            while True:
                if max_frames is not None and shown >= max_frames:
                    return
                yield np.asarray(env.render())
                shown += 1
                if done:
                    break
                action, _ = policy.predict(obs, deterministic=deterministic)
                obs, _, terminated, truncated, _ = env.step(action)
                done = terminated or truncated


class _VideoSink:
    """Streams frames into a .mp4 (imageio-ffmpeg) or .gif (Pillow) file."""

    def __init__(self, path: Path, fps: float):
        import imageio

        self.frames = 0
        if path.suffix.lower() == ".mp4":
            try:
                import imageio_ffmpeg  # noqa: F401  (imageio's mp4 backend)
            except ImportError:
                raise UserError("writing .mp4 needs imageio-ffmpeg: `pip install imageio-ffmpeg`, "
                                "or pass a .gif path") from None
            self._every = 1
            self._writer = imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps)
        else:
            self._every = _gif_stride(fps)
            # Pillow takes the delay in ms and GIF stores it in cs; loop=0 repeats forever.
            self._writer = imageio.get_writer(path, format="GIF", mode="I",
                                              duration=1000.0 * self._every / fps, loop=0)

    def show(self, frame: np.ndarray) -> bool:
        if self.frames % self._every == 0:
            self._writer.append_data(frame)
        self.frames += 1
        return True

    def close(self) -> None:
        self._writer.close()


def _gif_stride(fps: float) -> int:
    """Keep every k-th frame: the smallest k giving <= 50 fps whose delay rounds to whole
    centiseconds within 5% (125 fps → k=5, 40 ms; 30 fps → k=2, 70 ms for 66.7), so the
    GIF plays close to real time."""
    first = max(1, math.ceil(fps / GIF_MAX_FPS))
    for k in range(first, first + 10):
        centiseconds = 100.0 * k / fps
        if abs(round(centiseconds) - centiseconds) <= 0.05 * centiseconds:
            return k
    return first  # nothing close nearby: real time up to rounding


_NO_DISPLAY = "no display for a window: pass --video FILE.mp4 (or .gif), or run under Xvfb"


class _Window:
    """A pygame window showing frames at ``fps``; q, Esc or closing it stops."""

    def __init__(self, fps: float):
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame  # lazily: only the window needs it

        self._pg, self.fps, self.frames = pygame, fps, 0
        self._screen = self._clock = None

    def _open(self, frame: np.ndarray) -> None:
        pg = self._pg
        h, w = frame.shape[:2]
        scale = max(1, math.ceil(WINDOW_MIN_SIDE / max(h, w)))
        try:
            pg.display.init()
            self._screen = pg.display.set_mode((w * scale, h * scale))
        except pg.error as e:
            raise UserError(f"{_NO_DISPLAY} ({e})") from None
        pg.display.set_caption("prefrl play")
        self._clock = pg.time.Clock()

    def show(self, frame: np.ndarray) -> bool:
        pg = self._pg
        if self._screen is None:
            self._open(frame)
        for event in pg.event.get():
            if event.type == pg.QUIT or (event.type == pg.KEYDOWN and event.key in (pg.K_q, pg.K_ESCAPE)):
                return False
        surface = pg.surfarray.make_surface(np.ascontiguousarray(frame[..., :3].swapaxes(0, 1)))
        self._screen.blit(pg.transform.scale(surface, self._screen.get_size()), (0, 0))
        pg.display.flip()
        self.frames += 1
        self._clock.tick(self.fps)  # real time: wait out the rest of this frame's dt
        return True

    def close(self) -> None:
        if self._screen is not None:
            self._pg.display.quit()
