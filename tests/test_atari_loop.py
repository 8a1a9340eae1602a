"""Atari through the same loop, CLI, store and outputs as MuJoCo (tiny budgets)."""
import json

import pytest

pytest.importorskip("ale_py")

from prefrl.cli import main  # noqa: E402
from prefrl.store import PreferenceStore  # noqa: E402

TINY = ["--timesteps", "1024", "--n-envs", "2", "--refit-every", "512", "--clip-steps", "6", "--ensemble-size", "2",
        "--reward-min-steps", "3", "--eval-episodes", "1", "--no-progress"]


def test_short_pong_run_end_to_end(tmp_path, capsys):
    run_dir = tmp_path / "pong"
    assert main(["train", "--env", "ALE/Pong-v5", "--run-dir", str(run_dir), "--labels", "10",
                 "--initial-labels", "6", *TINY]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["labels"] == 10 and summary["timesteps"] == 1024
    assert -21 <= summary["true_return_mean"] <= 21  # the game's own score
    saved = json.loads((run_dir / "run.json").read_text())["config"]
    assert saved["initial_labels"] == 6 and saved["n_steps"] == 128 and saved["label_cap"] == 3000  # Atari preset
    with PreferenceStore(run_dir / "prefs.sqlite") as store:
        left, _, _ = store.preferences()
    assert left[0].obs.shape == (6, 4, 84, 84) and left[0].obs.dtype.name == "uint8"
    from stable_baselines3 import PPO
    assert PPO.load(run_dir / "policy.zip").observation_space.shape == (4, 84, 84)


def test_clips_for_people_keep_the_full_color_screen(tmp_path):
    run_dir = tmp_path / "human"
    assert main(["train", "--env", "ALE/Pong-v5", "--run-dir", str(run_dir), "--oracle", "human", "--no-window",
                 "--labels", "4", "--initial-labels", "4", *TINY]) == 0
    with PreferenceStore(run_dir / "prefs.sqlite") as store:
        clip = store.get_clip(store.pending_queries()[0].left_id)
    assert clip.frames.shape == (6, 210, 160, 3)


def test_pixels_with_an_mlp_reward_model_are_refused(tmp_path, capsys):
    code = main(["train", "--env", "ALE/Pong-v5", "--run-dir", str(tmp_path / "r"), "--reward-model", "mlp", *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "pixels" in err and "--reward-model cnn" in err and "\n" not in err
    assert not (tmp_path / "r").exists()
