"""The trainer side of human labeling: it asks and never waits; people answer through the store."""
import json
import math
import os
import subprocess
import sys
import threading
import time

from prefrl.cli import main
from prefrl.clips import Label
from prefrl.config import TrainConfig
from prefrl.loop import train
from prefrl.store import PreferenceStore

TOY = "prefrl/PointGoal-v0"


def test_training_never_waits_for_answers(tmp_path):
    cfg = TrainConfig(env=TOY, run_dir=str(tmp_path / "run"), oracle="human", no_window=True, labels=40,
                      timesteps=4096, n_steps=256, refit_every=1024, eval_episodes=1)
    started = time.time()
    summary = train(cfg, progress=False)
    assert time.time() - started < 60 and summary["timesteps"] == 4096
    assert summary["labels"] == 0
    with PreferenceStore(tmp_path / "run/prefs.sqlite") as store:
        pending = store.pending_queries()
        assert len(pending) == 40  # asked on schedule, left for a person, never over budget
        clip = store.get_clip(pending[0].left_id)
        assert clip.frames is not None and clip.frames.shape[1:] == (64, 64, 3)  # showable later
        assert store.meta["trainer_status"] == "finished" and store.meta["label_budget"] == "40"


def test_answers_from_a_labeling_process_reach_the_reward_model(tmp_path):
    """A concurrent labeler answers through its own store connection; training fits on them."""
    run_dir = tmp_path / "run"
    cfg = TrainConfig(env=TOY, run_dir=str(run_dir), oracle="human", no_window=True, labels=30,
                      timesteps=8192, n_steps=256, refit_every=1024, eval_episodes=1)
    stop = threading.Event()

    def labeler():
        while not (run_dir / "prefs.sqlite").exists():
            time.sleep(0.05)
        with PreferenceStore(run_dir / "prefs.sqlite") as store:
            while not stop.is_set():
                query = store.claim_next("tester")
                if query is None:
                    time.sleep(0.05)
                    continue
                left, right = store.get_clip(query.left_id), store.get_clip(query.right_id)
                answer = "left" if left.true_return > right.true_return else "right"
                store.record(Label(query.id, answer, "human", "tester", 0.5))

    thread = threading.Thread(target=labeler, daemon=True)
    thread.start()
    try:
        summary = train(cfg, progress=False)
    finally:
        stop.set()
        thread.join(5)
    assert summary["labels"] > 0
    rows = (run_dir / "progress.csv").read_text().splitlines()[1:]
    accuracies = [float(r.split(",")[-1]) for r in rows]
    assert not all(math.isnan(a) for a in accuracies)  # a fit happened: validation accuracy was measured
    with PreferenceStore(run_dir / "prefs.sqlite") as store:
        assert {l.source for l in store.labels()} == {"human"}


def test_human_oracle_without_a_display(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    result = subprocess.run([sys.executable, "-m", "prefrl", "train", "--env", TOY, "--oracle", "human",
                             "--run-dir", str(tmp_path / "r"), "--timesteps", "512"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2
    err = result.stderr.strip()
    assert "\n" not in err and "no display" in err and "Xvfb" in err and "--oracle" in err
    assert not (tmp_path / "r").exists()


def test_a_run_of_another_format_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"application": "prefrl", "format": 99, "version": "9.0",
                                                  "config": {"env": TOY}}))
    for argv in (["eval", str(run_dir)], ["train", "--run-dir", str(run_dir), "--resume"],
                 ["label", str(run_dir)], ["play", str(run_dir), "--video", str(tmp_path / "x.gif")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "format 99" in err and "\n" not in err


def test_train_opens_a_labeling_window_and_closes_it_at_the_end(tmp_path):
    """Under SDL's dummy driver: the window process starts, takes claims, and exits with training."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    result = subprocess.run([sys.executable, "-m", "prefrl", "train", "--env", TOY, "--oracle", "human",
                             "--run-dir", str(run_dir), "--labels", "20", "--timesteps", "4096", "--n-steps", "256",
                             "--refit-every", "1024", "--eval-episodes", "1", "--no-progress"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["timesteps"] == 4096
    with PreferenceStore(run_dir / "prefs.sqlite") as store:
        assert len(store.pending_queries()) == 20  # nobody pressed a key: all still waiting
        # The window claimed what it was showing and gave the claims back when it closed.
        assert store.claim_next("someone-else") is not None
    leftovers = subprocess.run(["pgrep", "-f", f"prefrl label {run_dir}"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
