"""Bad input through the CLI: one line naming the problem and the fix, exit 2, files untouched."""
import dataclasses
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from prefrl import rundir
from prefrl.cli import _config_from_args, build_parser, main
from prefrl.config import TrainConfig

TOY = "prefrl/PointGoal-v0"
TINY = ["--timesteps", "512", "--labels", "8", "--n-steps", "128", "--refit-every", "512",
        "--eval-episodes", "1", "--no-progress"]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "toy"
    assert main(["train", "--env", TOY, "--run-dir", str(run_dir), *TINY]) == 0
    return run_dir


def assert_one_line(code, err, *words):
    assert code == 2
    assert err.startswith("prefrl: ") and "\n" not in err and "Traceback" not in err
    for word in words:
        assert word in err, err


def test_unknown_env_id_in_a_real_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "prefrl", "train", "--env", "NoSuchEnv-v9",
                             "--run-dir", str(tmp_path / "r"), *TINY], capture_output=True, text=True)
    assert_one_line(result.returncode, result.stderr.strip(), "NoSuchEnv-v9")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag,value", [("--labels", "0"), ("--timesteps", "-5"), ("--n-envs", "0")])
def test_non_positive_budgets(capsys, tmp_path, flag, value):
    args = ["train", "--env", TOY, "--run-dir", str(tmp_path / "r"), *TINY, flag, value]
    assert_one_line(*run_cli(capsys, *args), flag, "positive")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", ["0", "1.5"])
def test_label_end_outside_the_run(capsys, tmp_path, value):
    args = ["train", "--env", TOY, "--run-dir", str(tmp_path / "r"), *TINY, "--label-end", value]
    assert_one_line(*run_cli(capsys, *args), "--label-end", "at most 1")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_log_std_init_not_a_number(capsys, tmp_path, value):
    args = ["train", "--env", TOY, "--run-dir", str(tmp_path / "r"), *TINY, "--log-std-init", value]
    assert_one_line(*run_cli(capsys, *args), "--log-std-init", "finite")
    assert not (tmp_path / "r").exists()


def test_resumed_run_from_before_the_lr_schedule_setting_keeps_a_constant_rate(tmp_path):
    """run.json of a run made before --lr-schedule existed has no such key: that run trained at a constant rate."""
    old = dataclasses.asdict(TrainConfig(env=TOY, run_dir=str(tmp_path / "old")))
    del old["lr_schedule"]
    (tmp_path / "old").mkdir()
    rundir.write_run(tmp_path / "old", old)
    args = build_parser().parse_args(["train", "--run-dir", str(tmp_path / "old"), "--resume"])
    assert _config_from_args(args, TrainConfig).lr_schedule == "constant"
    args = build_parser().parse_args(["train", "--env", TOY, "--run-dir", str(tmp_path / "new")])
    assert _config_from_args(args, TrainConfig).lr_schedule == "linear"


def test_unknown_lr_schedule(capsys, tmp_path):
    args = ["train", "--env", TOY, "--run-dir", str(tmp_path / "r"), *TINY, "--lr-schedule", "cosine"]
    assert_one_line(*run_cli(capsys, *args), "--lr-schedule", "constant or linear")
    assert not (tmp_path / "r").exists()


def test_unsupported_spaces(capsys, tmp_path):
    # Blackjack's observations are a Tuple space: no flat vector for the reward model.
    code, err = run_cli(capsys, "train", "--env", "Blackjack-v1", "--run-dir", str(tmp_path / "r"), *TINY)
    assert_one_line(code, err, "Tuple")
    assert not (tmp_path / "r").exists()


def test_bad_flag_values_and_unknown_choices(capsys, tmp_path):
    base = ["train", "--env", TOY, "--run-dir", str(tmp_path / "r"), *TINY]
    assert_one_line(*run_cli(capsys, *base, "--labels", "lots"), "--labels")
    assert_one_line(*run_cli(capsys, *base, "--oracle", "psychic"), "psychic", "perfect")
    assert_one_line(*run_cli(capsys, *base, "--selector", "vibes"), "vibes", "disagreement")
    assert_one_line(*run_cli(capsys, *base, "--oracle", "mistake", "--oracle-eps", "2"), "--oracle-eps")
    assert not (tmp_path / "r").exists()


def test_config_file_and_flags_override_it(capsys, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("env: prefrl/PointGoal-v0\nlabels: 6\ntimesteps: 256\nn-steps: 128\neval_episodes: 1\n")
    assert main(["train", "--config", str(cfg), "--run-dir", str(tmp_path / "r"), "--timesteps", "512",
                 "--refit-every", "512", "--no-progress"]) == 0
    import json
    summary = json.loads((tmp_path / "r/summary.json").read_text())
    assert summary["labels"] == 6 and summary["timesteps"] == 512
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: x\nlabelz: 3\n")
    assert_one_line(*run_cli(capsys, "train", "--config", str(bad), "--run-dir", str(tmp_path / "s")), "labelz")
    assert_one_line(*run_cli(capsys, "train", "--config", str(tmp_path / "nope.yaml")), "nope.yaml")


def test_existing_run_for_another_env(capsys, toy_run):
    before = snapshot(toy_run)
    code, err = run_cli(capsys, "train", "--env", "prefrl/PointGoalFall-v0", "--run-dir", str(toy_run), *TINY)
    assert_one_line(code, err, TOY, "--resume")
    code, err = run_cli(capsys, "train", "--env", "prefrl/PointGoalFall-v0", "--run-dir", str(toy_run), "--resume")
    assert_one_line(code, err, TOY)
    code, err = run_cli(capsys, "train", "--env", TOY, "--run-dir", str(toy_run), *TINY)
    assert_one_line(code, err, "--resume")
    assert snapshot(toy_run) == before


@pytest.mark.parametrize("damage", ["corrupt", "foreign"])
def test_corrupted_or_foreign_store(capsys, toy_run, tmp_path, damage):
    import shutil
    import sqlite3

    run_dir = tmp_path / "copy"
    shutil.copytree(toy_run, run_dir)
    store = run_dir / "prefs.sqlite"
    if damage == "corrupt":
        data = bytearray(store.read_bytes())
        data[100:4096] = b"\x07" * (4096 - 100)
        store.write_bytes(bytes(data))
    else:
        store.unlink()
        db = sqlite3.connect(store)
        db.execute("CREATE TABLE recipes (name TEXT)")
        db.commit()
        db.close()
    before = snapshot(run_dir)
    code, err = run_cli(capsys, "train", "--env", TOY, "--run-dir", str(run_dir), "--resume", "--no-progress")
    assert_one_line(code, err, "prefs.sqlite")
    assert snapshot(run_dir) == before


def test_eval_prints_true_return_json(capsys, toy_run):
    import json

    assert main(["eval", str(toy_run), "--episodes", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["eval_episodes"] == 3 and len(out["episode_lengths"]) == 3
    assert {"true_return_mean", "true_return_std"} <= out.keys()


def test_eval_of_something_that_is_not_a_run(capsys, tmp_path):
    assert_one_line(*run_cli(capsys, "eval", str(tmp_path / "missing")), "does not exist")
    assert_one_line(*run_cli(capsys, "eval", str(tmp_path)), "not a prefrl run")


def test_help_lists_every_setting(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--env", "--labels", "--oracle-eps", "--selector", "--config", "--resume", "--true-reward"):
        assert flag in out


def test_a_second_trainer_on_a_busy_run_is_refused(capsys, toy_run):
    held = rundir.lock(toy_run)  # as a running `prefrl train` holds it
    try:
        before = snapshot(toy_run)
        code, err = run_cli(capsys, "train", "--run-dir", str(toy_run), "--resume", "--no-progress")
        assert_one_line(code, err, "in use", "pid")
        assert snapshot(toy_run) == before
    finally:
        held.close()


@pytest.mark.parametrize("command", [["train"], ["lm", "train"]])
def test_switch_flags_reach_the_config(command):
    from prefrl.lm.config import LMConfig

    cls, env = (LMConfig, []) if command == ["lm", "train"] else (TrainConfig, ["--env", TOY])

    def config(*flags):
        return _config_from_args(build_parser().parse_args([*command, *env, "--run-dir", "r", *flags]), cls)

    # "--no-window" asks for no window: it must not read as the negation of a "--window" switch.
    assert config("--no-window").no_window is True and config().no_window is False
    assert config("--true-reward").true_reward is True and config("--no-true-reward").true_reward is False


def test_human_run_with_no_window_needs_no_display(tmp_path, monkeypatch):
    from prefrl.store import PreferenceStore

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    run_dir = tmp_path / "r"
    assert main(["train", "--env", TOY, "--run-dir", str(run_dir), "--oracle", "human", "--no-window", *TINY]) == 0
    with PreferenceStore(run_dir / "prefs.sqlite") as store:
        assert store.num_answers() == 0 and len(store.pending_queries()) > 0  # asked, waiting for people
