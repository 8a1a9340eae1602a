"""The labeling window on a real X server (Xvfb) answering real key presses (xdotool).

Skipped unless Xvfb, xdotool and ImageMagick's ``import`` are installed
(Debian: ``apt-get install xvfb xdotool imagemagick``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from prefrl.clips import Clip
from prefrl.store import PreferenceStore

TOOLS = ("Xvfb", "xdotool", "import")
# Developers without the tools get a skip; CI (which .ci/run provisions) must run this test.
pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in TOOLS) and not os.environ.get("CI"),
    reason="needs Xvfb, xdotool and ImageMagick's import (apt-get install xvfb xdotool imagemagick)")


def moving_square_clip(steps: int, hue: int) -> Clip:
    """A clip whose frames show a square crossing a gradient: easy to recognize in a screenshot."""
    frames = np.zeros((steps, 96, 128, 3), dtype=np.uint8)
    frames[..., 0] = np.linspace(40, 90, 128, dtype=np.uint8)
    frames[..., 2] = np.linspace(60, 120, 96, dtype=np.uint8)[:, None]
    for t in range(steps):
        x = 8 + t * 100 // steps
        frames[t, 36:60, x:x + 20] = (hue, 200, 255 - hue)
    return Clip(obs=np.zeros((steps, 2), np.float32), acts=np.zeros((steps, 2), np.float32),
                rewards=np.zeros(steps, np.float32), length=steps, frames=frames,
                env_id="prefrl/PointGoal-v0")


def make_run(run_dir: Path, queries: int = 4) -> Path:
    run_dir.mkdir()
    meta = {"env_id": "prefrl/PointGoal-v0", "label_budget": "40", "trainer_status": "training",
            "trainer_heartbeat": str(time.time())}
    with PreferenceStore(run_dir / "prefs.sqlite", create=True, meta=meta) as store:
        store.add_queries([(moving_square_clip(25, 40 * i), moving_square_clip(25, 200 - 40 * i))
                           for i in range(queries)])
    return run_dir


def free_display() -> int:
    for n in range(91, 200):
        if not os.path.exists(f"/tmp/.X{n}-lock") and not os.path.exists(f"/tmp/.X11-unix/X{n}"):
            return n
    pytest.fail("no free X display number in :91..:199; stop stale Xvfb servers (/tmp/.X*-lock)")


@pytest.fixture
def xvfb():
    """An Xvfb server; yields the environment for programs to run on it."""
    n = free_display()
    server = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", "1024x600x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 10
        while not os.path.exists(f"/tmp/.X11-unix/X{n}"):
            assert server.poll() is None, "Xvfb exited"
            assert time.monotonic() < end, "Xvfb did not start"
            time.sleep(0.05)
        env = {k: v for k, v in os.environ.items() if k not in ("SDL_VIDEODRIVER", "WAYLAND_DISPLAY")}
        yield {**env, "DISPLAY": f":{n}"}
    finally:
        server.terminate()
        server.wait(10)


def xdotool(env, *args) -> str:
    return subprocess.run(["xdotool", *args], env=env, check=True, capture_output=True,
                          text=True, timeout=20).stdout.strip()


def current_answers(run_dir: Path) -> int:
    with PreferenceStore(run_dir / "prefs.sqlite") as store:
        return store.num_answers()


def press_until_recorded(env, window: str, key: str, run_dir: Path, n: int, proc,
                         timeout: float = 20.0) -> None:
    """Focus ``window`` and press ``key`` until the store holds ``n`` answers.

    The window ignores keys while no pair is on screen (the first pair may still be
    loading), so a press that is not recorded within a second is repeated; a recorded
    one shows up in the store within milliseconds, so this never answers twice.
    """
    end = time.monotonic() + timeout
    while True:
        # Focused again each time: with no window manager, focus given before the
        # window is mapped does not stick.
        xdotool(env, "windowfocus", window)
        xdotool(env, "key", key)
        pressed = time.monotonic()
        while time.monotonic() - pressed < 1.0:
            if current_answers(run_dir) >= n:
                return
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        assert time.monotonic() < end, f"the {key} key press was not recorded"


def test_real_key_presses_on_xvfb(tmp_path, xvfb):
    run_dir = make_run(tmp_path / "run")
    shot = tmp_path / "shot.png"
    proc = subprocess.Popen([sys.executable, "-m", "prefrl.ui.labeler", str(run_dir)], env=xvfb,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # --class: Debian's xdotool (3.20160805) cannot match SDL's UTF-8 window name.
        window = xdotool(xvfb, "search", "--sync", "--class", "prefrl").split()[0]
        for n, key in enumerate(("Left", "Right", "Up"), start=1):
            press_until_recorded(xvfb, window, key, run_dir, n, proc)
            time.sleep(0.3)  # the next pair (rendered ahead) reaches the screen
            if n == 1:
                subprocess.run(["import", "-window", "root", str(shot)], env=xvfb, check=True, timeout=30)
        xdotool(xvfb, "key", "q")
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    with PreferenceStore(run_dir / "prefs.sqlite") as store:
        labels = store.labels()
        assert [(lb.query_id, lb.answer, lb.source) for lb in labels] == [
            (1, "left", "human"), (2, "right", "human"), (3, "equal", "human")]
        assert all(lb.response_time > 0 for lb in labels)
        assert [q.id for q in store.pending_queries()] == [4]
    assert '"answers": 3' in out

    import pygame  # only to read the PNG back

    pixels = pygame.surfarray.array3d(pygame.image.load(str(shot)))
    assert pixels.shape[:2] == (1024, 600)
    assert pixels.reshape(-1, 3).std(axis=0).max() > 10  # not a blank screen
    assert len(np.unique(pixels.reshape(-1, 3)[::97], axis=0)) > 20
