"""A run directory: what it holds, checking it before anything is written, atomic checkpoints.

    RUN_DIR/run.json          the config the run was made with, and prefrl's version
    RUN_DIR/prefs.sqlite      queries, clips and every answer (the source of truth on resume)
    RUN_DIR/checkpoint/       policy.zip (loads with PPO.load), reward.pt, state.json
    RUN_DIR/policy.zip        the final policy
    RUN_DIR/summary.json      final figures
    RUN_DIR/progress.csv      one row per checkpoint (control) or PPO iteration (language)
    RUN_DIR/tb/               TensorBoard logs
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import prefrl
from prefrl.errors import UserError

RUN_FILE = "run.json"
RUN_FORMAT = 1  # bump when a run directory's layout changes incompatibly
STORE_FILE = "prefs.sqlite"
CHECKPOINT = "checkpoint"


def read_run(run_dir: Path) -> dict:
    """The run's saved metadata; UserError if the folder is not a prefrl run."""
    path = Path(run_dir) / RUN_FILE
    if not Path(run_dir).is_dir():
        raise UserError(f"run directory {run_dir} does not exist: check the path, or start a run with `prefrl train`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("application") != "prefrl" or "config" not in data:
            raise ValueError
    except FileNotFoundError:
        raise UserError(f"{run_dir} is not a prefrl run (no {RUN_FILE}): pass the folder given to --run-dir") from None
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path} is not a prefrl run file: pass the folder of a prefrl run") from None
    if data.get("format", RUN_FORMAT) != RUN_FORMAT:
        raise UserError(f"{run_dir} was made by prefrl {data.get('version', '?')} (run format {data.get('format')}); "
                        f"this prefrl {prefrl.__version__} reads format {RUN_FORMAT}: use the release that made it")
    return data


def check_new_or_resume(run_dir: Path, env_id: str, resume: bool) -> dict | None:
    """Refuse to clobber another run. Returns the saved run when resuming, else None."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--run-dir {run_dir} is a file, not a folder: choose another path")
    has_run = (run_dir / RUN_FILE).exists()
    if resume:
        if not has_run:
            raise UserError(f"nothing to resume in {run_dir} (no {RUN_FILE}): drop --resume to start a new run there")
        saved = read_run(run_dir)
        if saved["config"]["env"] != env_id:
            other = saved["config"]["env"]
            flag = f"--task {other[3:]}" if other.startswith("lm:") else f"--env {other}"
            raise UserError(f"{run_dir} holds a run on {other}, not {env_id}: "
                            f"resume it with {flag} or choose another --run-dir")
        return saved
    if has_run:
        saved = read_run(run_dir)
        other = saved["config"]["env"]
        what = f"a run on {other}" if other != env_id else "a run already"
        raise UserError(f"{run_dir} holds {what}: pass --resume to continue it, or choose another --run-dir")
    if run_dir.is_dir() and (run_dir / STORE_FILE).exists():
        raise UserError(f"{run_dir} holds a {STORE_FILE} but no {RUN_FILE}: move it away or choose another --run-dir")
    return None


def lock(run_dir: Path):
    """Hold ``RUN_DIR/train.lock`` for this process's lifetime: one trainer per run directory.

    Two trainers on one run would both write checkpoints and ask for labels. The lock is an
    OS lock (``flock``), so a killed trainer leaves none behind. Returns the open file.
    """
    import fcntl

    path = Path(run_dir) / "train.lock"
    handle = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise UserError(f"{run_dir} is in use by another `prefrl train` ({owner}): "
                        "wait for it to finish or stop it, then --resume") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def open_store(run_dir: Path, env_id: str, new_config: dict | None):
    """Lock the run directory and open (or create) its store: ``(lock, store)``.

    ``new_config``: the config of a new run, written to ``run.json``; ``None`` when
    resuming. The first thing a trainer writes, after every input has been checked.
    """
    from prefrl.store import PreferenceStore

    run_dir = Path(run_dir)
    store_path = run_dir / STORE_FILE
    if new_config is not None and store_path.exists():
        raise UserError(f"{store_path} exists without a run: move it away or choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = lock(run_dir)
    store = PreferenceStore(store_path, create=True, meta={"env_id": env_id})
    if store.meta.get("env_id", env_id) != env_id:
        raise UserError(f"{store_path} was made for {store.meta['env_id']}, not {env_id}: choose another --run-dir")
    if new_config is not None:
        write_run(run_dir, new_config)
    return handle, store


def heartbeat(store, status: str, budget: int) -> None:
    """Tell labeling windows how the trainer is doing (they show it in their status line)."""
    import time

    store.set_meta("trainer_status", status)
    store.set_meta("trainer_heartbeat", str(time.time()))
    store.set_meta("label_budget", str(budget))


def finish(run_dir: Path, store, window, summary: dict, budget: int) -> None:
    """The end of training: ``summary.json``, "finished" for labelers, the window closed, the store closed."""
    atomic_write_text(Path(run_dir) / "summary.json", json.dumps(summary, indent=2))
    heartbeat(store, "finished", budget)
    if window is not None and window.poll() is None:
        window.terminate()  # the window releases its claims; answers are already stored
        window.wait(timeout=30)
    store.close()


def append_progress(run_dir: Path, row: dict) -> None:
    """Append ``row`` to ``RUN_DIR/progress.csv`` (the header first, when the file is new).

    A file begun by another version keeps its header: the row is written in its columns
    (blank where the row lacks one), so a resumed run never leaves a ragged CSV."""
    path = Path(run_dir) / "progress.csv"
    header = None
    if path.exists() and path.stat().st_size:
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\n").split(",")
    with open(path, "a", encoding="utf-8") as f:
        if header is None:
            header = list(row)
            f.write(",".join(header) + "\n")
        f.write(",".join(str(row.get(k, "")) for k in header) + "\n")


def write_run(run_dir: Path, config: dict) -> None:
    atomic_write_text(Path(run_dir) / RUN_FILE, json.dumps(
        {"application": "prefrl", "format": RUN_FORMAT, "version": prefrl.__version__, "config": config}, indent=2))


def atomic_write_text(path: Path, text: str) -> None:
    tmp = Path(f"{path}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, write) -> None:
    """Write a checkpoint so that a kill at any moment leaves a complete one on disk.

    ``write(folder)`` fills a fresh folder; it then replaces the old checkpoint by renames.
    """
    run_dir = Path(run_dir)
    new, cur, old = run_dir / f"{CHECKPOINT}.new", run_dir / CHECKPOINT, run_dir / f"{CHECKPOINT}.old"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()
    write(new)
    for f in new.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    shutil.rmtree(old, ignore_errors=True)
    if cur.exists():
        cur.rename(old)
    new.rename(cur)
    shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint folder, if any (``checkpoint.old`` survives a kill mid-swap)."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        folder = Path(run_dir) / name
        if (folder / "state.json").exists():
            return folder
    return None


def policy_path(run_dir: Path) -> Path:
    """The run's final policy, else its latest checkpoint's; UserError if it has neither yet."""
    path = Path(run_dir) / "policy.zip"
    if path.exists():
        return path
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise UserError(f"{run_dir} has no saved policy yet: let `prefrl train` run to its first checkpoint")
    return checkpoint / "policy.zip"
