"""prefrl.play: videos with the right frames, a window under SDL's dummy driver, clear errors."""
import json
import os
import sys

import pytest
import torch

from prefrl.cli import main
from prefrl.errors import UserError
from prefrl.play import play

EPISODE_FRAMES = 51  # PointGoal: truncated at 50 steps; a frame after reset and after each step
FPS = 20  # PointGoal has no dt, so its render_fps


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    torch.set_num_threads(1)  # a benchmark may share the machine
    folder = tmp_path_factory.mktemp("play") / "run"
    assert main(["train", "--env", "prefrl/PointGoal-v0", "--run-dir", str(folder), "--labels", "8",
                 "--timesteps", "512", "--n-steps", "128", "--refit-every", "512",
                 "--eval-episodes", "1", "--no-progress"]) == 0
    return folder


def test_gif_has_every_frame_in_real_time(run_dir, tmp_path):
    from PIL import Image

    out = tmp_path / "x.gif"
    result = play(run_dir, video=out, episodes=2)
    assert result == {"episodes": 2, "frames": 2 * EPISODE_FRAMES, "video": str(out), "fps": FPS}
    with Image.open(out) as gif:
        assert gif.size == (64, 64)
        durations = []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
    # Pillow merges identical consecutive frames into one with the summed delay, so count
    # frames by time: every frame shown for 1/fps s.
    assert sum(durations) == 2 * EPISODE_FRAMES * 1000 // FPS
    assert len(durations) <= 2 * EPISODE_FRAMES


def test_mp4_has_every_frame(run_dir, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import imageio.v3 as iio

    out = tmp_path / "x.mp4"
    result = play(run_dir, video=out)
    assert result["frames"] == EPISODE_FRAMES and result["episodes"] == 1
    frames = iio.imread(out, plugin="FFMPEG")
    assert frames.shape == (EPISODE_FRAMES, 64, 64, 3)
    assert iio.immeta(out, plugin="FFMPEG")["fps"] == pytest.approx(FPS)


def test_window_under_dummy_driver(run_dir, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    result = play(run_dir, max_frames=5, deterministic=False)
    assert result == {"episodes": 1, "frames": 5, "video": None, "fps": FPS}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="displays are a Linux question")
def test_no_display_says_what_to_do(run_dir, monkeypatch):
    for name in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UserError, match="--video") as err:
        play(run_dir)
    assert "\n" not in str(err.value)


def test_bad_inputs_are_user_errors(run_dir, tmp_path):
    with pytest.raises(UserError, match=r"\.mp4 or \.gif"):
        play(run_dir, video=tmp_path / "x.avi")
    assert not (tmp_path / "x.avi").exists()
    with pytest.raises(UserError, match="not a prefrl run"):
        play(tmp_path, video=tmp_path / "x.gif")
    with pytest.raises(UserError, match="positive"):
        play(run_dir, video=tmp_path / "x.gif", episodes=0)
    # A run that has not saved a policy yet.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "run.json").write_text((run_dir / "run.json").read_text())
    assert json.loads((fresh / "run.json").read_text())["application"] == "prefrl"
    with pytest.raises(UserError, match="no saved policy"):
        play(fresh, video=tmp_path / "x.gif")


def test_falls_back_to_the_checkpoint(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    os.remove(copy / "policy.zip")
    assert play(copy, video=tmp_path / "c.gif", max_frames=3)["frames"] == 3
