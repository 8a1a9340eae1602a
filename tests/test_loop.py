"""The whole loop on the tiny env: it learns, survives short episodes and a kill -9."""
import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from prefrl.buffer import TrajectoryBuffer
from prefrl.config import TrainConfig
from prefrl.environment import make_env
from prefrl.evaluation import evaluate
from prefrl.loop import make_agent, make_vec_env, train
from prefrl.reward import RewardEnsemble
from prefrl.store import PreferenceStore

TOY = "prefrl/PointGoal-v0"
# A constant PPO rate: the default falls to 0 by the end of the run, and on the 40k-step toy run below
# that left the preference agent short of its margin over random (-40 against -50 + 10). The schedule
# has its own test below.
FAST = dict(n_steps=256, refit_every=4096, eval_episodes=10, lr_schedule="constant")


class RandomPolicy:
    def __init__(self, space):
        self.space = space

    def predict(self, obs, deterministic=True):
        return self.space.sample(), None


def held_out_pairs(n, seed):
    """Clips of a random policy on the toy env, labeled by their true returns."""
    env = make_env(TOY, seed=seed)
    env.action_space.seed(seed)
    buffer = TrajectoryBuffer(1, 25)
    obs, _ = env.reset(seed=seed)
    for _ in range(3000):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs[None], action[None], np.array([reward]), np.array([terminated or truncated]))
        obs = env.reset()[0] if terminated or truncated else next_obs
    clips = buffer.sample_clips(2 * n, np.random.default_rng(seed))
    return clips[0::2], clips[1::2]


def test_learns_from_synthetic_preferences(tmp_path):
    # 40k steps: preference-trained PPO takes off around 20k here (true-reward PPO sooner), and
    # at 20k the margin over a random policy was within the run-to-run spread of machines.
    cfg = TrainConfig(env=TOY, run_dir=str(tmp_path / "run"), labels=100, timesteps=40_960, **FAST)
    summary = train(cfg, progress=False)
    random_return = evaluate(RandomPolicy(make_env(TOY).action_space), TOY, 20, seed=1)["true_return_mean"]
    assert summary["labels"] == 100
    assert summary["true_return_mean"] > random_return + 10, (summary, random_return)

    # The ensemble ranks unseen clips the way the true reward does.
    ensemble = RewardEnsemble(4, 2)
    ensemble.load_state_dict(torch.load(tmp_path / "run/checkpoint/reward.pt", weights_only=False)["ensemble"])
    left, right = held_out_pairs(300, seed=5)
    predicted = (ensemble.clip_returns(np.stack([c.obs for c in left]), np.stack([c.acts for c in left]))
                 - ensemble.clip_returns(np.stack([c.obs for c in right]), np.stack([c.acts for c in right]))).mean(0)
    truth = np.array([a.true_return - b.true_return for a, b in zip(left, right)])
    assert ((predicted > 0) == (truth > 0)).mean() > 0.75

    for name in ("summary.json", "policy.zip", "progress.csv", "prefs.sqlite", "run.json"):
        assert (tmp_path / "run" / name).exists()
    with open(tmp_path / "run/progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 10 and all(float(r["ep_len_mean"]) >= 1 for r in rows[1:])
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "run/tb").iterdir())
    from stable_baselines3 import PPO
    assert PPO.load(tmp_path / "run/policy.zip").observation_space.shape == (4,)


def test_true_reward_baseline_writes_the_same_outputs(tmp_path):
    cfg = TrainConfig(env=TOY, run_dir=str(tmp_path / "true"), true_reward=True, timesteps=4096, **FAST)
    summary = train(cfg, progress=False)
    for key in ("env", "timesteps", "labels", "true_return_mean", "true_return_std", "eval_episodes", "wall_seconds",
                "cpu_seconds"):
        assert key in summary
    assert summary["labels"] == 0 and summary["mode"] == "true-reward"
    assert json.loads((tmp_path / "true/summary.json").read_text()) == summary


def test_agent_starts_with_the_configured_action_std():
    cfg = TrainConfig(env=TOY, log_std_init=-1.5, net_arch=16)
    venv = make_vec_env(cfg)
    policy = make_agent(cfg, venv, image=False).policy
    venv.close()
    assert torch.allclose(policy.log_std, torch.full_like(policy.log_std, -1.5))
    assert [layer.out_features for layer in policy.mlp_extractor.policy_net if hasattr(layer, "out_features")] == [16, 16]


@pytest.mark.parametrize("schedule, rates", [(None, [1e-3, 0.75e-3, 0.5e-3, 0.25e-3]),  # the default: linear
                                             ("constant", [1e-3] * 4)])
def test_learning_rate_falls_by_the_share_of_the_run_left_unless_constant(tmp_path, schedule, rates):
    chosen = {"lr_schedule": schedule} if schedule else {}
    cfg = TrainConfig(env=TOY, run_dir=str(tmp_path / "lr"), true_reward=True, timesteps=4096, n_steps=128,
                      refit_every=1024, eval_episodes=1, learning_rate=1e-3, **chosen)
    seen = []
    train(cfg, progress=False, on_checkpoint=lambda run: seen.append(run.agent.policy.optimizer.param_groups[0]["lr"]))
    assert seen == pytest.approx(rates)


def test_episodes_shorter_than_a_clip_do_not_stop_the_loop(tmp_path):
    """PointGoalFall ends most random episodes in under 10 steps; clips are 25 steps."""
    cfg = TrainConfig(env="prefrl/PointGoalFall-v0", run_dir=str(tmp_path / "fall"), labels=40,
                      timesteps=4096, clip_steps=25, **FAST)
    summary = train(cfg, progress=False)
    assert summary["labels"] == 40
    with PreferenceStore(tmp_path / "fall/prefs.sqlite") as store:
        left, right, _ = store.preferences()
    lengths = [c.length for c in left + right]
    assert min(lengths) < 10 and all(c.steps == 25 for c in left + right)
    short = next(c for c in left + right if c.length < 25)
    assert np.all(short.rewards[short.length:] == 0)
    assert np.all(short.obs[short.length:] == short.obs[short.length - 1])
    # The labels compared ended clips, so the model has learned what an ended episode is worth.
    saved = torch.load(tmp_path / "fall/checkpoint/reward.pt", weights_only=False)["ensemble"]
    assert saved["ends_learned"] and saved["members.0.end_reward"] != 0


def test_label_end_asks_the_whole_budget_early_then_holds_the_reward(tmp_path):
    cfg = TrainConfig(env=TOY, run_dir=str(tmp_path / "run"), labels=40, timesteps=8192, label_end=0.5,
                      n_steps=256, refit_every=1024, eval_episodes=1)
    summary = train(cfg, progress=False)
    with open(tmp_path / "run/progress.csv", newline="") as f:
        rows = [(int(r["timesteps"]), int(r["answers"])) for r in csv.DictReader(f)]
    assert summary["labels"] == 40
    assert [a for t, a in rows if t >= 4096] == [40] * sum(t >= 4096 for t, _ in rows)  # all asked by half the run
    assert rows[0][1] < rows[2][1] < 40  # ... spread over that half, not all at once
    new_answers = sum(a != before for (_, a), before in zip(rows, [10] + [a for _, a in rows]))  # 10 asked first
    state = json.loads((tmp_path / "run/checkpoint/state.json").read_text())
    assert state["fits"] == 1 + new_answers  # the first fit, then one per row with new answers: none after


def test_same_seed_same_labels(tmp_path):
    answers = []
    for name in ("a", "b"):
        cfg = TrainConfig(env=TOY, run_dir=str(tmp_path / name), labels=20, timesteps=1024, oracle="stochastic",
                          n_steps=256, refit_every=1024, eval_episodes=1)
        train(cfg, progress=False)
        with PreferenceStore(tmp_path / name / "prefs.sqlite") as store:
            left, right, _ = store.preferences()
            answers.append(([l.answer for l in store.labels()], [c.true_return for c in left]))
    assert answers[0] == answers[1]


def _answers(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT id, query_id, answer FROM answers WHERE status='current'").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def test_kill_9_then_resume_loses_no_label_and_keeps_the_budget(tmp_path):
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "prefrl", "train", "--env", TOY, "--run-dir", str(run_dir), "--labels", "60",
            "--timesteps", "16384", "--refit-every", "2048", "--n-steps", "256", "--eval-episodes", "2", "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it after its first checkpoint, mid-training
        state = run_dir / "checkpoint" / "state.json"
        if state.exists() and json.loads(state.read_text())["timesteps"] >= 4096:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("training never reached its second checkpoint: " + proc.stderr.read().decode())
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # Time counts across sessions: mark the killed session's so the resumed total must carry it.
    state = run_dir / "checkpoint" / "state.json"
    saved = json.loads(state.read_text())
    assert set(saved["loop_cpu_seconds"]) == {"initial_experience", "queries", "reward_fits", "reward_steps"}
    state.write_text(json.dumps({**saved, "wall_seconds": 1e6, "cpu_seconds": 1e6,
                                 "loop_cpu_seconds": dict.fromkeys(saved["loop_cpu_seconds"], 1e5)}))
    before = _answers(run_dir / "prefs.sqlite")
    assert 15 <= len(before) < 60
    assert not (run_dir / "summary.json").exists()

    done = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = _answers(run_dir / "prefs.sqlite")
    assert set(before) <= set(after)
    assert len(after) == 60
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["labels"] == 60 and summary["timesteps"] >= 16384
    assert 1e6 < summary["cpu_seconds"] < 1e6 + 300 and 1e6 < summary["wall_seconds"] < 1e6 + 300
    loop = summary["loop_cpu_seconds"]  # the loop's parts also count across sessions, within the total
    assert loop["initial_experience"] == 1e5 and all(loop[k] > 1e5 for k in ("queries", "reward_fits", "reward_steps"))
    assert sum(loop.values()) < summary["cpu_seconds"]
    with open(run_dir / "progress.csv", newline="") as f:  # the curve carries the CPU of both sessions
        rows = list(csv.DictReader(f))
    assert all(None not in row for row in rows)  # no row longer than the header
    resumed = [row for row in rows if float(row["cpu_seconds"]) > 1e6]
    assert resumed and all(4e5 < float(row["loop_cpu_seconds"]) < float(row["cpu_seconds"]) for row in resumed)


def test_progress_rows_keep_the_columns_of_a_file_from_another_version(tmp_path):
    from prefrl.rundir import append_progress

    (tmp_path / "progress.csv").write_text("timesteps,wall_seconds,answers\n4096,1.5,10\n")
    append_progress(tmp_path, {"timesteps": 8192, "wall_seconds": 3.0, "cpu_seconds": 2.9, "answers": 20})
    assert (tmp_path / "progress.csv").read_text().splitlines() == ["timesteps,wall_seconds,answers", "4096,1.5,10",
                                                                     "8192,3.0,20"]
    (tmp_path / "new").mkdir()
    append_progress(tmp_path / "new", {"a": 1, "b": 2})
    assert (tmp_path / "new/progress.csv").read_text() == "a,b\n1,2\n"


def test_recorded_frames_are_bounded_by_bytes():
    buffer = TrajectoryBuffer(1, clip_steps=5, capacity=10_000, frame_bytes=100 * 64 * 64 * 3)
    frame = np.zeros((64, 64, 3), np.uint8)
    for t in range(500):
        buffer.add(np.zeros((1, 2), np.float32), np.zeros((1, 1), np.float32), np.zeros(1),
                   np.array([t % 10 == 9]), frames=[frame])
    assert len(buffer) <= 100 + 10  # the newest ~100 frames' worth of steps (plus the open episode)
    clip = buffer.sample_clips(1, np.random.default_rng(0))[0]
    assert clip.frames.shape == (5, 64, 64, 3)


def test_only_episodes_that_ended_are_padded():
    """Padding means "the episode is over": a piece cut short by a reset or a time limit is
    no clip while whole episodes exist, but a terminated one is, padded."""
    buffer = TrajectoryBuffer(1, clip_steps=10)

    def episode(steps, value, **done):
        for t in range(steps):
            last = t == steps - 1
            buffer.add(np.full((1, 2), value, np.float32), np.zeros((1, 1), np.float32), np.zeros(1),
                       np.array([last and bool(done)]), truncated=np.array([done.get("truncated", False)]))

    def lengths(n):
        seen = {}
        for c in buffer.sample_clips(n, np.random.default_rng(0)):
            seen.setdefault(float(c.obs[0, 0]), set()).add(c.length)
        return seen

    episode(4, 1.0, truncated=True)  # a time limit: not over
    episode(30, 2.0, truncated=True)  # long enough, cut by a time limit: whole clips only
    episode(3, 3.0)  # still running, then cut by a reset
    buffer.end_episodes()
    assert lengths(200) == {2.0: {10}}
    episode(30, 4.0, truncated=False)  # a fall after 30 steps: whole clips, and windows past the fall
    episode(5, 5.0, truncated=False)  # a fall after 5 steps: a padded clip
    seen = lengths(2000)
    assert set(seen) == {2.0, 4.0, 5.0} and seen[2.0] == {10} and seen[5.0] == {5}
    assert seen[4.0] == set(range(5, 11))  # up to half a clip (5 steps) past the end


def test_clips_keep_the_mujoco_state_of_each_observation_across_resets():
    """The training VecEnv reads MuJoCo states from its envs, not from the infos: each clip
    step's state replays to that step's observation, across the envs' automatic resets."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    from prefrl.environment import set_sim_state
    from prefrl.vec_env import LearnedRewardVecEnv

    venv = DummyVecEnv([lambda: make_env("Hopper-v5", record_states=False) for _ in range(2)])
    venv.seed(0)
    buffer = TrajectoryBuffer(2, clip_steps=10)
    wrapped = LearnedRewardVecEnv(venv, lambda obs, acts: np.zeros(len(obs)), buffer)
    wrapped.reset()
    rng, falls = np.random.default_rng(0), 0
    for _ in range(300):
        _, _, dones, infos = wrapped.step(rng.uniform(-1, 1, (2, 3)))
        falls += int(dones.sum())
        assert "sim_state" not in infos[0]
    assert falls >= 4  # a random Hopper falls within dozens of steps
    replay = gym.make("Hopper-v5")
    replay.reset(seed=123)  # another episode: the observation must come from the state alone
    clips = buffer.sample_clips(40, np.random.default_rng(1))
    assert sum(c.length < 10 for c in clips) >= 1  # windows at and past a fall are among them
    for clip in clips:
        for t in range(clip.length):
            np.testing.assert_allclose(set_sim_state(replay, clip.states[t]), clip.obs[t], rtol=1e-6, atol=1e-6)


def test_rewards_deferred_to_the_rollout_end_are_each_steps_reward():
    """PPO gets the learned reward once per rollout, in one batch (``defer_to_rollouts``): the
    rollout's rewards, returns and advantages are those of a reward given at every step,
    the value bootstrapped where the time limit cut an episode included."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from prefrl.vec_env import LearnedRewardVecEnv, defer_to_rollouts

    torch.manual_seed(0)
    probe = make_env(TOY)
    ensemble = RewardEnsemble(probe.observation_space.shape[0], probe.action_space.shape[0])
    rollouts = []
    for deferred in (False, True):
        venv = DummyVecEnv([lambda: make_env(TOY, record_states=False) for _ in range(2)])
        venv.seed(0)
        wrapped = LearnedRewardVecEnv(venv, ensemble.predict, TrajectoryBuffer(2, 10))
        agent = PPO("MlpPolicy", wrapped, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu")
        if deferred:
            defer_to_rollouts(agent, wrapped)
        agent.learn(256)  # one rollout of 128 steps × 2 envs: episodes of 50 steps end by the time limit
        rollouts.append(agent.rollout_buffer)
    each_step, batched = rollouts
    assert np.abs(each_step.rewards).min() > 0  # a learned reward on every step, not the placeholder 0
    for name in ("rewards", "returns", "advantages"):
        np.testing.assert_allclose(getattr(batched, name), getattr(each_step, name), rtol=1e-5, atol=1e-5)


def test_scored_episodes_keep_each_steps_true_and_learned_reward():
    from prefrl.evaluation import play_episodes
    env = make_env(TOY, record_states=False)
    env.action_space.seed(0)
    episodes = play_episodes(RandomPolicy(env.action_space), env, 3, seed=0,
                             score=lambda obs, act: obs[:, 0] + act[:, 0])
    for e in episodes:
        true, learned = np.array(e["steps"]).T
        assert len(e["steps"]) == e["length"] > 1
        assert not e["terminated"] and e["length"] == 50  # PointGoal only ends by its time limit
        assert true.sum() == pytest.approx(e["true_return"]) and learned.sum() == pytest.approx(e["learned_return"])
        assert np.std(learned) > 0 and np.std(true) > 0
    falls = make_env("prefrl/PointGoalFall-v0", record_states=False)
    falls.action_space.seed(0)
    played = play_episodes(RandomPolicy(falls.action_space), falls, 5, seed=0, deterministic=False)
    assert any(e["terminated"] for e in played)
    assert all(e["length"] < 50 for e in played if e["terminated"])
