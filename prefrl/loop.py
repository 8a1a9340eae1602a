"""The preference-learning loop (Christiano et al. 2017, §2.2), read top to bottom by `train`."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from prefrl import rundir
from prefrl.buffer import TrajectoryBuffer
from prefrl.config import TrainConfig
from prefrl.display import require_display
from prefrl.environment import check_spaces, clip_steps, is_image_space, make_env
from prefrl.errors import UserError
from prefrl.feedback import Feedback
from prefrl.evaluation import evaluate
from prefrl.oracles import make_oracle
from prefrl.reward import RewardEnsemble
from prefrl.schedule import labels_due
from prefrl.selectors import SELECTORS
from prefrl.trainer import RewardTrainer
from prefrl.vec_env import LearnedRewardVecEnv, action_dim, defer_to_rollouts

LOOP_PARTS = ("initial_experience", "queries", "reward_fits", "reward_steps")
FIRST_FIT_EPOCHS = 5  # the first fit sees only initial-policy labels; fit them longer (A.2 does so on Atari)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          on_checkpoint: Callable[[Run], bool | None] | None = None) -> dict:
    """Train a policy from preferences (or, with ``cfg.true_reward``, from the env's reward).

    The agent collects experience under the current learned reward; at the pace of the
    label schedule, the selector turns recent experience into the most disputed queries,
    the oracle answers them into the store, and the reward ensemble is refitted on every
    answer in the store. Returns the summary also written to ``RUN_DIR/summary.json``.

    ``on_checkpoint(run)`` is called after each checkpoint (e.g. to evaluate the policy
    as training goes); returning True stops training there.
    """
    run = Run(cfg, resume)  # checks every input before anything is written
    from tqdm import tqdm
    bar = tqdm(total=cfg.timesteps, initial=run.timesteps, unit="step", disable=not progress or None)
    if not cfg.true_reward and run.timesteps == 0 and run.fits == 0:
        run.collect_initial_experience()  # 25% of the budget from the initial policy (A.1)
        run.ask_and_answer(run.labels_due(0))
        run.fit_reward()
        run.save_checkpoint()
    elif not cfg.true_reward and run.store.num_answers():
        run.fit_reward()  # answers recorded after the checkpoint we resumed from
    while run.timesteps < cfg.timesteps:
        run.set_learning_rate()
        run.agent.learn(min(cfg.refit_every, cfg.timesteps - run.timesteps), reset_num_timesteps=False)
        run.timesteps = int(run.agent.num_timesteps)
        if not cfg.true_reward:
            run.ask_and_answer(run.labels_due(run.timesteps))
            run.fit_reward()
        run.save_checkpoint()
        run.log_progress()
        bar.update(run.timesteps - bar.n)
        if on_checkpoint is not None and on_checkpoint(run):
            break
    bar.close()
    return run.finish()


class Run:
    """Everything one training process holds: env, agent, reward model, store, oracle."""

    def __init__(self, cfg: TrainConfig, resume: bool):
        from stable_baselines3 import PPO

        self.cfg, self.dir = cfg, Path(cfg.run_dir)
        torch.set_num_threads(1)  # small nets: extra threads only contend (2-core machines)
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")  # likewise NumPy's reward batches; one thread also keeps runs reproducible
        torch.manual_seed(cfg.seed)  # same seed, same reward model, same queries, same labels
        saved = rundir.check_new_or_resume(self.dir, cfg.env, resume)
        probe = make_env(cfg.env)
        check_spaces(probe)
        self.clip_steps = cfg.clip_steps or clip_steps(probe)
        self.image = is_image_space(probe.observation_space)
        self.ensemble = make_ensemble(cfg, probe)
        probe.close()
        if cfg.selector not in SELECTORS:
            raise UserError(f"unknown selector '{cfg.selector}': use one of {', '.join(SELECTORS)}")
        self.human = cfg.oracle == "human" and not cfg.true_reward
        if self.human and not cfg.no_window:  # a person needs a screen: fail before writing anything
            require_display("no display for the labeling window: run under Xvfb (xvfb-run -a prefrl ...), pass "
                            "--no-window and label elsewhere with `prefrl label RUN_DIR`, or use a synthetic --oracle")
        self.oracle = None if cfg.true_reward or self.human else make_oracle(
            cfg.oracle, seed=cfg.seed, beta=cfg.oracle_beta, gamma=cfg.oracle_gamma, eps=cfg.oracle_eps,
            skip=cfg.oracle_skip, equal=cfg.oracle_equal)
        # Nothing has been written so far; from here on we create and open files.
        self._lock, self.store = rundir.open_store(self.dir, cfg.env, None if saved else asdict(cfg))
        self.rng = np.random.default_rng([cfg.seed, 1])
        self.buffer = TrajectoryBuffer(cfg.n_envs, self.clip_steps, cfg.buffer_steps, env_id=cfg.env)
        self.trainer = RewardTrainer(self.ensemble, lr=cfg.reward_lr, batch_size=cfg.reward_batch_size,
                                     epochs=cfg.reward_epochs, min_steps=cfg.reward_min_steps, seed=cfg.seed)
        self.venv = self._make_venv()
        self.timesteps, self.fits, self.wall_before, self.cpu_before = 0, 0, 0.0, 0.0
        self.loop_cpu = dict.fromkeys(LOOP_PARTS, 0.0)  # CPU seconds of what plain PPO does not do
        checkpoint = rundir.latest_checkpoint(self.dir) if saved else None
        if checkpoint is None:
            self.agent = make_agent(cfg, self.venv, self.image)
        else:
            self.agent = PPO.load(checkpoint / "policy.zip", env=self.venv, device="cpu")
            state = json.loads((checkpoint / "state.json").read_text())
            self.timesteps, self.fits, self.wall_before = state["timesteps"], state["fits"], state["wall_seconds"]
            self.cpu_before = state.get("cpu_seconds", 0.0)
            self.loop_cpu.update(state.get("loop_cpu_seconds", {}))
            self.rng.bit_generator.state = state["rng"]
            if not cfg.true_reward:
                saved_model = torch.load(checkpoint / "reward.pt", weights_only=False)
                self.ensemble.load_state_dict(saved_model["ensemble"])
                self.trainer.load_state_dict(saved_model["trainer"])
                if self.oracle is not None and saved_model.get("oracle_rng"):
                    self.oracle.rng.bit_generator.state = saved_model["oracle_rng"]
        if not cfg.true_reward:
            defer_to_rollouts(self.agent, self.venv)  # the learned reward once per rollout, in one batch
        from stable_baselines3.common.logger import configure

        self.agent.set_logger(configure(str(self.dir / "tb"), ["tensorboard"]))
        self.feedback = Feedback(self.store, self.trainer, cfg.selector, self.oracle, self.rng, cfg.label_cap)
        self.last_fit, self.window = None, None
        self.started, self.cpu_started = time.time(), time.process_time()
        self.heartbeat()
        if self.human and not cfg.no_window:  # a separate process: neither waits on the other
            self.window = subprocess.Popen([sys.executable, "-m", "prefrl", "label", str(self.dir)],
                                           stdout=subprocess.DEVNULL)  # our stdout is the run's summary

    def heartbeat(self, status: str = "training") -> None:
        rundir.heartbeat(self.store, status, self.cfg.labels)

    def _make_venv(self):
        venv = make_vec_env(self.cfg, record_frames=self.human)  # frames where a person needs them
        if self.cfg.true_reward:
            return venv
        return LearnedRewardVecEnv(venv, self.ensemble.predict, self.buffer)

    def labels_due(self, t: int) -> int:
        cfg = self.cfg
        return labels_due(t, cfg.labels, max(1, round(cfg.timesteps * cfg.label_end)), cfg.initial_label_fraction,
                          cfg.label_horizon, initial=cfg.initial_labels or None)

    @contextmanager
    def tally(self, part: str):
        """Add the CPU time of the block to ``loop_cpu[part]``, less the reward steps inside it."""
        start, inner = time.process_time(), self.reward_step_cpu()
        yield
        self.loop_cpu[part] += time.process_time() - start - (self.reward_step_cpu() - inner)

    def reward_step_cpu(self) -> float:
        return getattr(self.venv, "cpu_seconds", 0.0)

    def loop_cpu_seconds(self) -> dict:
        """CPU seconds by part of the preference loop, all sessions (what true-reward PPO does not spend)."""
        return {**self.loop_cpu, "reward_steps": self.loop_cpu["reward_steps"] + self.reward_step_cpu()}

    def set_learning_rate(self) -> None:
        """PPO's learning rate for the next ``refit_every`` steps: constant, or the share of the run left times it."""
        if self.cfg.lr_schedule == "linear":
            from stable_baselines3.common.utils import ConstantSchedule

            self.agent.lr_schedule = ConstantSchedule(self.cfg.learning_rate * (1 - self.timesteps / self.cfg.timesteps))

    def collect_initial_experience(self) -> None:
        """Step the initial (untrained, stochastic) policy to have clips for the first labels."""
        wanted = self.labels_due(0)
        steps = int(np.clip(2 * wanted * self.clip_steps, 2_000, 20_000))
        with self.tally("initial_experience"):
            obs = self.venv.reset()
            for _ in range(-(-steps // self.cfg.n_envs)):
                action, _ = self.agent.predict(obs, deterministic=False)
                obs, *_ = self.venv.step(action)

    def ask_and_answer(self, due: int) -> None:
        """Queries up to the schedule's count, cut from recent experience; an oracle answers them."""
        self.heartbeat()

        def candidates(n: int):  # §2.3: ``oversample``× more candidate pairs than queries
            clips = self.buffer.sample_clips(2 * n * self.cfg.oversample, self.rng)
            return clips[0::2], clips[1::2]

        with self.tally("queries"):
            self.feedback.ask_and_answer(due, candidates)

    def fit_reward(self) -> None:
        """Refit the ensemble on every answer in the store (nothing to do if none are new)."""
        def first_fit() -> None:  # fix input statistics on the experience of the first fit
            if self.fits == 0:
                self.ensemble.set_input_stats(*self.buffer.sample_steps(10_000, self.rng))

        epochs = self.cfg.reward_epochs * FIRST_FIT_EPOCHS if self.fits == 0 else None
        with self.tally("reward_fits"):
            metrics = self.feedback.fit(epochs=epochs, before=first_fit)
            if metrics is not None and len(self.buffer):
                self.ensemble.normalize(*self.buffer.sample_steps(10_000, self.rng))
        if metrics is None:
            return
        self.fits += 1
        for key, value in asdict(metrics).items():
            self.agent.logger.record(f"reward/{key}", value)
        self.agent.logger.record("reward/answers", self.store.num_answers())
        self.agent.logger.dump(self.timesteps)
        self.last_fit = metrics

    def save_checkpoint(self) -> None:
        def write(folder: Path) -> None:
            self.agent.save(folder / "policy.zip")
            if not self.cfg.true_reward:
                torch.save({"ensemble": self.ensemble.state_dict(), "trainer": self.trainer.state_dict(),
                            "oracle_rng": self.oracle.rng.bit_generator.state if self.oracle else None},
                           folder / "reward.pt")
            (folder / "state.json").write_text(json.dumps({
                "timesteps": self.timesteps, "fits": self.fits, "wall_seconds": self.wall_seconds(),
                "cpu_seconds": self.cpu_seconds(), "loop_cpu_seconds": self.loop_cpu_seconds(),
                "rng": self.rng.bit_generator.state}))

        rundir.save_checkpoint(self.dir, write)

    def log_progress(self) -> None:
        """Append a row to ``progress.csv``: the learning curve on the true episode return."""
        episodes = list(self.agent.ep_info_buffer)  # the last 100 episodes, from the Monitor

        def mean(key: str) -> float:
            return float(np.mean([info[key] for info in episodes])) if episodes else float("nan")
        row = {"timesteps": self.timesteps, "wall_seconds": round(self.wall_seconds(), 2),
               "ep_true_return_mean": mean("r"), "ep_len_mean": mean("l"),  # a Hopper that falls sooner: shorter
               "answers": 0 if self.cfg.true_reward else self.store.num_answers(),
               "reward_val_accuracy": self.last_fit.val_accuracy if self.last_fit else float("nan"),
               "cpu_seconds": round(self.cpu_seconds(), 2),  # where along the run the overhead arises
               "loop_cpu_seconds": round(sum(self.loop_cpu_seconds().values()), 2)}
        rundir.append_progress(self.dir, row)

    def wall_seconds(self) -> float:
        return self.wall_before + time.time() - self.started

    def cpu_seconds(self) -> float:
        """CPU time this run has used, all sessions: its cost, whatever else shares the machine."""
        return self.cpu_before + time.process_time() - self.cpu_started

    def finish(self) -> dict:
        self.agent.save(self.dir / "policy.zip")
        results = evaluate(self.agent, self.cfg.env, self.cfg.eval_episodes, seed=self.cfg.seed)
        summary = {"env": self.cfg.env, "mode": "true-reward" if self.cfg.true_reward else "preferences",
                   "timesteps": self.timesteps, "labels": self.store.num_answers(),
                   "labels_trained": len(self.store.preferences()[2]), **results,
                   "wall_seconds": self.wall_seconds(), "cpu_seconds": self.cpu_seconds(),
                   **({} if self.cfg.true_reward else {"loop_cpu_seconds": self.loop_cpu_seconds()}),
                   "oracle": None if self.cfg.true_reward else self.cfg.oracle,
                   "selector": self.cfg.selector, "seed": self.cfg.seed}
        rundir.finish(self.dir, self.store, self.window, summary, self.cfg.labels)
        self.venv.close()
        return summary


def make_vec_env(cfg: TrainConfig, record_frames: bool = False):
    """The agent's environments: ``cfg.n_envs`` Monitor-wrapped copies of ``cfg.env``, seeded with ``cfg.seed``.

    DummyVecEnv: on 2 cores it beat SubprocVecEnv (shared/DESIGN.md measurements). MuJoCo
    states are not recorded here: :class:`LearnedRewardVecEnv` reads them from the envs.
    """
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = DummyVecEnv([lambda: Monitor(make_env(cfg.env, record_states=False, record_frames=record_frames))
                        for _ in range(cfg.n_envs)])
    venv.seed(cfg.seed)
    return venv


def make_agent(cfg: TrainConfig, venv, image: bool):
    """A fresh SB3 PPO with the run's settings: the same for preferences and the true reward."""
    from stable_baselines3 import PPO

    policy_kwargs = {"log_std_init": cfg.log_std_init}  # used by Gaussian (continuous) actions only
    if not image:
        policy_kwargs["net_arch"] = [cfg.net_arch, cfg.net_arch]
    return PPO("CnnPolicy" if image else "MlpPolicy", venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size,
               n_epochs=cfg.n_epochs, learning_rate=cfg.learning_rate, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
               clip_range=cfg.clip_range, ent_coef=cfg.ent_coef, seed=cfg.seed, device="cpu",
               policy_kwargs=policy_kwargs, verbose=0)


def make_ensemble(cfg: TrainConfig, env):
    """The reward model for this env: MLPs on vectors, the paper's CNN on pixels (A.2)."""
    image = is_image_space(env.observation_space)
    kind = cfg.reward_model if cfg.reward_model != "auto" else ("cnn" if image else "mlp")
    if image and kind == "mlp":
        raise UserError(f"{cfg.env} observes pixels, which --reward-model mlp cannot read: use --reward-model cnn (or auto)")
    if not image and kind == "cnn":
        raise UserError(f"{cfg.env} does not observe images, which --reward-model cnn needs: use mlp (or auto)")
    act_dim = action_dim(env.action_space)
    if kind == "cnn":
        from functools import partial

        from prefrl.atari import blank_score, game_name, is_atari
        from prefrl.cnn_reward import CnnRewardEnsemble

        # §3.1.2: the score is blanked so the reward model cannot simply read it off.
        blank = partial(blank_score, game=game_name(cfg.env)) if is_atari(cfg.env) else None
        return CnnRewardEnsemble(env.observation_space.shape, act_dim, cfg.ensemble_size, blank=blank)
    return RewardEnsemble(int(np.prod(env.observation_space.shape)), act_dim, cfg.ensemble_size, cfg.reward_hidden)

