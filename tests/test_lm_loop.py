"""The language loop through the CLI: a run that improves, resume after kill -9, the baseline,
K-wise fits, people answering from a terminal, and bad input refused in one line."""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from prefrl.cli import main  # noqa: E402

# Small everywhere but the e2e run: a few SFT steps, short rollouts, cheap reward fits.
TINY = ["--sft-steps", "40", "--rollout-prompts", "8", "--ppo-minibatch", "8", "--ppo-epochs", "1",
        "--reward-min-steps", "4", "--reward-epochs", "1", "--ensemble-size", "2", "--oversample", "2",
        "--no-progress"]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def assert_one_line(code, err, *words):
    assert code == 2, err
    assert err.startswith("prefrl: ") and "\n" not in err and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def answers(store_path: Path) -> list[tuple]:
    """Current answers ``(id, query_id, answer, source, labeler)``, read without writing anything."""
    db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT id, query_id, answer, source, labeler FROM answers "
                          "WHERE status = 'current' ORDER BY id").fetchall()
    finally:
        db.close()


def meta(store_path: Path) -> dict:
    db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()


def progress_rows(run_dir: Path) -> list[dict]:
    lines = (run_dir / "progress.csv").read_text().splitlines()
    header = lines[0].split(",")
    return [dict(zip(header, line.split(","))) for line in lines[1:]]


def cli_env(pythonpath: Path | None = None) -> dict:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def wait_for(condition, proc: subprocess.Popen, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the trainer ended (rc {proc.returncode}) before {what}:\n{err[-3000:]}")
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


# -- the loop end to end: preferences from a perfect teacher make the policy better ---------------------
# Budgets: 400 labels asked every 5 of 40 PPO iterations, one reward member (the fits are most of the
# time). Measured on a 2-core machine (~60 s each), held-out sampled gold score SFT -> final:
# seed 0: 0.58 -> 0.76 (+0.18), seed 1: 0.50 -> 0.82 (+0.32), seed 2: 0.50 -> 0.92 (+0.42),
# seed 3: 0.62 -> 0.84 (+0.23); kl_final 1.6 to 5.7 nats. With 200 labels (20 to 60 iterations) the
# reward model (val. accuracy ~0.8) was exploited in half the seeds and the score fell.
E2E_LABELS, E2E_ITERATIONS, E2E_MARGIN, E2E_MAX_KL = 400, 40, 0.1, 15.0
SUMMARY_KEYS = {"task", "mode", "oracle", "selector", "labels", "labels_trained", "gold_score_sft",
                "gold_score_final", "gold_score_sft_greedy", "gold_score_final_greedy", "kl_final",
                "ppo_iterations", "responses_sampled", "reward_val_accuracy", "eval_prompts", "wall_seconds", "seed"}


def test_end_to_end_preferences_raise_the_gold_score(capsys, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "lm", "train", "--task", "chinese", "--oracle", "perfect",
                             "--labels", E2E_LABELS, "--ppo-iterations", E2E_ITERATIONS, "--ppo-lr", "1e-4",
                             "--ensemble-size", "1", "--seed", "0", "--run-dir", run_dir, "--no-progress")
    assert code == 0, err
    summary = json.loads(out)
    assert summary == json.loads((run_dir / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys(), SUMMARY_KEYS - summary.keys()
    assert summary["mode"] == "preferences" and summary["oracle"] == "perfect" and summary["task"] == "chinese"
    assert summary["labels"] == E2E_LABELS and 0 < summary["labels_trained"] <= E2E_LABELS
    assert summary["ppo_iterations"] == E2E_ITERATIONS
    assert summary["gold_score_final"] >= summary["gold_score_sft"] + E2E_MARGIN, summary
    assert 0 < summary["kl_final"] < E2E_MAX_KL, summary
    assert 0.5 < summary["reward_val_accuracy"] <= 1
    assert {a[3] for a in answers(run_dir / "prefs.sqlite")} == {"oracle:perfect"}

    rows = progress_rows(run_dir)
    assert [int(r["iteration"]) for r in rows] == list(range(1, E2E_ITERATIONS + 1))
    asked = [int(r["answers"]) for r in rows]
    assert asked == sorted(asked) and asked[0] < E2E_LABELS and asked[-1] == E2E_LABELS  # asked as PPO went
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("reward_mean", "gold_mean", "kl_mean"))

    policy = AutoModelForCausalLM.from_pretrained(run_dir / "policy", local_files_only=True)
    sft = AutoModelForCausalLM.from_pretrained(run_dir / "sft", local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "policy", local_files_only=True)
    assert len(tokenizer) == policy.config.vocab_size
    moved = [name for name, p in policy.state_dict().items() if not p.equal(sft.state_dict()[name])]
    assert moved, "the saved policy is the SFT model"

    code, out, err = run_cli(capsys, "lm", "sample", run_dir, "--prompt", "天空是什么颜色？", "--n", "3")
    assert code == 0, err
    sampled = json.loads(out)
    assert sampled["model"] == "policy" and sampled["task"] == "chinese"
    [entry] = sampled["samples"]
    assert entry["prompt"] == "天空是什么颜色？"
    assert len(entry["responses"]) == 3 and all(isinstance(r, str) for r in entry["responses"])
    assert len(entry["gold_scores"]) == 3 and all(0 <= g <= 1 for g in entry["gold_scores"])


USER_TASKS = '''
import random

from prefrl.lm.tasks import Task


def no_demos(seed=0):
    return Task("nodemos", ["a?"], ["b?"], [], lambda p, r: 1.0, 4)


def _long_prompt():  # ~780 tokens for a tokenizer trained on it: far past the tiny model's 128 positions
    rng = random.Random(0)
    return " ".join("".join(rng.choice("abcdefghij") for _ in range(5)) for _ in range(300)) + "?"


def long_prompt(seed=0):
    return Task("long", [_long_prompt()], ["hi?"], [("hi?", "ok"), ("yo?", "no")], lambda p, r: float(r == "ok"), 8)
'''


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Bad (and one good) task files, a user task module, and models that are not causal LMs."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("inputs")
    (folder / "lm_loop_user_tasks.py").write_text(USER_TASKS)
    (folder / "empty.jsonl").write_text("\n\n")
    (folder / "latin1.jsonl").write_bytes('{"prompt": "Café?", "response": "Oui, café."}\n'.encode("latin-1"))
    rows = [{"prompt": f"Name a {thing}.", "response": f"A {thing} I like is {name}."}
            for thing, names in (("fruit", ["apple", "pear"]), ("colour", ["red", "teal"]),
                                 ("city", ["Oslo", "Lima"]), ("tool", ["saw", "drill"]), ("bird", ["owl", "crow"]))
            for name in names]
    (folder / "favourites.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 4))
    BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder / "bert")
    (folder / "no_config").mkdir()
    (folder / "no_config" / "model.safetensors").write_bytes(b"not a model")
    return folder


@pytest.fixture
def user_path(inputs, monkeypatch):
    monkeypatch.syspath_prepend(str(inputs))
    return inputs


@pytest.mark.parametrize("case", ["bert", "no_config", "missing"])
def test_model_that_is_not_a_causal_lm(capsys, tmp_path, inputs, case):
    problem = {"bert": "not a causal language model", "no_config": "no config.json", "missing": "not a directory"}
    before = snapshot(inputs)
    code, _, err = run_cli(capsys, "lm", "train", "--task", "chinese", "--model", inputs / case,
                           "--run-dir", tmp_path / "r", "--labels", "8", "--no-progress")
    assert_one_line(code, err, problem[case])
    assert not (tmp_path / "r").exists()
    assert snapshot(inputs) == before


@pytest.mark.parametrize("spec,problem", [
    ("nosuchmod_zz:make", "cannot import"),
    ("lm_loop_user_tasks:no_demos", "no demonstrations"),
    ("lm_loop_user_tasks:missing", "no callable"),
    ("empty.jsonl", "no demonstrations"),
    ("latin1.jsonl", "not UTF-8"),
    ("no_such_task", "unknown task"),
])
def test_bad_task_specs(capsys, tmp_path, user_path, spec, problem):
    if spec.endswith(".jsonl"):
        spec = str(user_path / spec)
    code, _, err = run_cli(capsys, "lm", "train", "--task", spec, "--run-dir", tmp_path / "r", "--labels", "8",
                           "--oracle", "human", "--no-window", "--no-progress")
    assert_one_line(code, err, problem)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags", [["--oracle", "perfect"], ["--oracle", "stochastic"], ["--true-reward"]])
def test_synthetic_oracle_or_true_reward_needs_a_scorer(capsys, tmp_path, inputs, flags):
    code, _, err = run_cli(capsys, "lm", "train", "--task", inputs / "favourites.jsonl", "--run-dir",
                           tmp_path / "r", "--labels", "8", *flags, "--no-progress")
    assert_one_line(code, err, "no gold scorer", "--oracle human")
    assert not (tmp_path / "r").exists()


def test_human_oracle_without_a_display_or_no_window(capsys, tmp_path, inputs, monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run_cli(capsys, "lm", "train", "--task", inputs / "favourites.jsonl", "--oracle", "human",
                           "--run-dir", tmp_path / "r", "--labels", "8", "--no-progress")
    assert_one_line(code, err, "no display", "--no-window")
    assert not (tmp_path / "r").exists()


def test_backflip_judge_is_refused_for_text(capsys, tmp_path):
    code, _, err = run_cli(capsys, "lm", "train", "--task", "chinese", "--oracle", "backflip",
                           "--run-dir", tmp_path / "r", "--no-progress")
    assert_one_line(code, err, "backflip")
    assert not (tmp_path / "r").exists()


def test_prompt_longer_than_the_context_is_one_line(capsys, tmp_path, user_path):
    code, _, err = run_cli(capsys, "lm", "train", "--task", "lm_loop_user_tasks:long_prompt", "--sft-steps", "0",
                           "--run-dir", tmp_path / "r", "--labels", "8", "--no-progress")
    assert_one_line(code, err, "context of 128", "tokens")


def test_prompt_longer_than_the_context_writes_nothing(capsys, tmp_path, user_path):
    code, _, err = run_cli(capsys, "lm", "train", "--task", "lm_loop_user_tasks:long_prompt", "--sft-steps", "0",
                           "--run-dir", tmp_path / "r", "--labels", "8", "--no-progress")
    assert code == 2
    assert not (tmp_path / "r").exists(), sorted(p.name for p in (tmp_path / "r").iterdir())


def test_sample_and_label_on_what_is_not_a_language_run(capsys, tmp_path):
    from prefrl import rundir

    missing = tmp_path / "missing"
    for command in (["sample", missing, "--prompt", "hi"], ["label", missing, "--terminal"]):
        code, _, err = run_cli(capsys, "lm", *command)
        assert_one_line(code, err, "does not exist")
    assert not missing.exists()
    control = tmp_path / "control"
    control.mkdir()
    rundir.write_run(control, {"env": "prefrl/PointGoal-v0", "run_dir": str(control)})
    before = snapshot(control)
    for command in (["sample", control, "--prompt", "hi"], ["label", control], ["label", control, "--terminal"]):
        code, _, err = run_cli(capsys, "lm", *command)
        assert_one_line(code, err, "not a language run")
    assert snapshot(control) == before


# -- the true-reward baseline (also the existing run the next test must not touch) -----------------------
@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("baseline") / "run"
    code = main(["lm", "train", "--task", "chinese", "--true-reward", "--ppo-iterations", "3",
                 "--run-dir", str(run_dir), *TINY])
    assert code == 0
    return run_dir


def test_true_reward_baseline(baseline):
    summary = json.loads((baseline / "summary.json").read_text())
    assert summary["mode"] == "true-reward" and summary["oracle"] is None
    assert summary["labels"] == 0 and summary["labels_trained"] == 0 and summary["reward_val_accuracy"] is None
    assert summary["ppo_iterations"] == 3 and summary["responses_sampled"] == 3 * 8
    assert 0 <= summary["gold_score_sft"] <= 1 and 0 <= summary["gold_score_final"] <= 1
    rows = progress_rows(baseline)
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    for row in rows:  # PPO's reward is the gold score itself
        assert float(row["reward_mean"]) == pytest.approx(float(row["gold_mean"]), abs=1e-5)
        assert int(row["answers"]) == 0
    db = sqlite3.connect(f"file:{baseline / 'prefs.sqlite'}?mode=ro", uri=True)
    assert db.execute("SELECT count(*) FROM queries").fetchone()[0] == 0  # nobody was asked anything
    db.close()


def test_existing_language_run_is_not_overwritten(capsys, baseline):
    before = snapshot(baseline)
    code, _, err = run_cli(capsys, "lm", "train", "--task", "chinese", "--true-reward", "--run-dir", baseline,
                           "--ppo-iterations", "3", *TINY)
    assert_one_line(code, err, "--resume")
    code, _, err = run_cli(capsys, "lm", "train", "--task", "arithmetic", "--run-dir", baseline, "--resume",
                           "--no-progress")
    assert_one_line(code, err, "lm:chinese")
    code, _, err = run_cli(capsys, "train", "--env", "prefrl/PointGoal-v0", "--run-dir", baseline, "--no-progress")
    assert_one_line(code, err, "lm:chinese", "--resume")
    assert snapshot(baseline) == before


# -- K-wise fits ------------------------------------------------------------------------------------------
def test_kwise_fits_grouped_pairs(capsys, tmp_path, monkeypatch):
    from prefrl.trainer import RewardTrainer

    seen = []
    fit = RewardTrainer.fit

    def spy(self, *args, groups=None, **kwargs):
        seen.append((len(args[-1]), groups))
        return fit(self, *args, groups=groups, **kwargs)

    monkeypatch.setattr(RewardTrainer, "fit", spy)
    run_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "lm", "train", "--task", "chinese", "--kwise", "--labels", "30",
                             "--ppo-iterations", "2", "--refit-every", "2", "--run-dir", run_dir, *TINY)
    assert code == 0, err
    summary = json.loads(out)
    assert summary == json.loads((run_dir / "summary.json").read_text())
    assert summary["labels"] == 30 and summary["ppo_iterations"] == 2
    accuracy = summary["reward_val_accuracy"]
    assert isinstance(accuracy, float) and 0 <= accuracy <= 1  # NaN fails here too
    assert seen, "the reward model was never fitted"
    for n_pairs, groups in seen:
        assert groups is not None and len(groups) == n_pairs  # one prompt, one batch element
        assert set(groups.tolist()) == set(range(int(groups.max()) + 1))


# -- resume after kill -9 ---------------------------------------------------------------------------------
def test_resume_after_kill_keeps_every_answer_and_the_budget(capsys, tmp_path):
    run_dir, budget = tmp_path / "run", 24
    store, state = run_dir / "prefs.sqlite", run_dir / "checkpoint" / "state.json"
    proc = subprocess.Popen([sys.executable, "-m", "prefrl", "lm", "train", "--task", "chinese", "--labels",
                             str(budget), "--ppo-iterations", "8", "--refit-every", "2", "--run-dir", str(run_dir),
                             *TINY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        wait_for(lambda: state.exists() and answers(store), proc, 120, "the first checkpoint")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "summary.json").exists()  # killed mid-run
    before = answers(store)
    killed_at = json.loads(state.read_text())["iteration"]
    assert 0 < len(before) < budget and killed_at < 8
    sft_before = snapshot(run_dir / "sft")

    code, out, err = run_cli(capsys, "lm", "train", "--run-dir", run_dir, "--resume", "--no-progress")
    assert code == 0, err
    summary = json.loads(out)
    after = answers(store)
    assert set(before) <= set(after)  # no answer lost, none changed
    assert summary["labels"] == len(after) == budget  # the budget holds across the two processes together
    assert summary["ppo_iterations"] == 8 and summary["task"] == "chinese"
    assert snapshot(run_dir / "sft") == sft_before  # SFT is not redone on resume
    assert int(progress_rows(run_dir)[-1]["iteration"]) == 8


# -- people answering from a terminal while the trainer waits ----------------------------------------------
def test_human_answers_from_the_terminal_drive_training(tmp_path, inputs):
    pytest.importorskip("pygame")
    from prefrl.ui import terminal

    run_dir, budget = tmp_path / "run", 4
    store = run_dir / "prefs.sqlite"
    # A JSON Lines task has no gold scorer: only people can judge it, and they may.
    proc = subprocess.Popen([sys.executable, "-m", "prefrl", "lm", "train", "--task", str(inputs / "favourites.jsonl"),
                             "--oracle", "human", "--no-window", "--labels", str(budget), "--ppo-iterations", "2",
                             "--refit-every", "2", "--run-dir", str(run_dir), *TINY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        wait_for(lambda: store.exists() and meta(store).get("trainer_status") == "waiting for the first answers",
                 proc, 120, "the trainer to wait for answers")
        time.sleep(1.5)  # it keeps waiting: no PPO on an unfitted reward model
        assert proc.poll() is None and not (run_dir / "progress.csv").exists() and not answers(store)
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        asked = db.execute("SELECT count(*) FROM queries").fetchone()[0]
        db.close()
        assert asked == budget  # the whole (tiny) budget is due before the first PPO block

        out = io.StringIO()
        result = terminal.run(run_dir, labeler="t", stdin=io.StringIO("1\n2\n=\n1\nq\n"), stdout=out)
        assert result["answers"] == budget, out.getvalue()[-2000:]

        stdout, stderr = proc.communicate(timeout=180)
    finally:
        stop(proc)
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout)
    assert summary["labels"] == budget and summary["ppo_iterations"] == 2 and summary["oracle"] == "human"
    assert summary["gold_score_final"] is None  # no scorer: nothing to measure against
    assert [(a[3], a[4]) for a in answers(store)] == [("human", "t")] * budget
    assert [a[2] for a in answers(store)] == ["left", "right", "equal", "left"]
    rows = progress_rows(run_dir)
    assert len(rows) == 2 and all(int(r["answers"]) == budget for r in rows)
    assert meta(store)["trainer_status"] == "finished"
