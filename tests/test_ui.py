"""The labeling window and session, driven headless (SDL dummy driver) with posted events."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pygame = pytest.importorskip("pygame")

from prefrl.clips import Clip  # noqa: E402
from prefrl.errors import UserError  # noqa: E402
from prefrl.store import PreferenceStore  # noqa: E402
from prefrl.ui import labeler as lab  # noqa: E402
from ui_driver import claims, drive, key, on_screen, quit_session  # noqa: E402
from prefrl.ui.window import Status  # noqa: E402

POINT = "prefrl/PointGoal-v0"


def frame_clip(rng, steps=8, length=None) -> Clip:
    """A non-MuJoCo clip that carries its own frames."""
    return Clip(obs=rng.normal(size=(steps, 4)).astype(np.float32),
                acts=rng.normal(size=(steps, 2)).astype(np.float32),
                rewards=rng.normal(size=steps).astype(np.float32), length=length or steps,
                frames=rng.integers(0, 256, size=(steps, 64, 64, 3), dtype=np.uint8), env_id=POINT)


def make_run(tmp_path, queries=4, *, env_id=POINT, clips=None, **meta) -> str:
    """A run directory whose store holds ``queries`` queries about frame-carrying clips."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    meta = {"env_id": env_id, "label_budget": "100", "trainer_status": "training",
            "trainer_heartbeat": str(time.time()), **meta}
    with PreferenceStore(run_dir / "prefs.sqlite", create=True, meta=meta) as store:
        if clips is None:
            rng = np.random.default_rng(0)
            clips = [(frame_clip(rng), frame_clip(rng, length=5)) for _ in range(queries)]
        if clips:
            store.add_queries(clips)
    return str(run_dir)


def store_of(run_dir) -> PreferenceStore:
    return PreferenceStore(os.path.join(run_dir, "prefs.sqlite"))


def answer(session, k) -> int:
    """Press ``k`` on the pair on screen; returns that pair's query id once recorded."""
    query_id, before = on_screen(session), session.answers + session.undone
    key(k)
    drive(session, lambda: session.answers + session.undone != before or session.current is None
          or session.current.query.id != query_id)
    return query_id


def test_each_key_records_its_answer(tmp_path, session_of):
    run_dir = make_run(tmp_path, queries=4)
    session = session_of(run_dir, labeler="alice")
    keys = {pygame.K_LEFT: "left", pygame.K_RIGHT: "right", pygame.K_UP: "equal",
            pygame.K_DOWN: "incomparable"}
    asked = [(answer(session, k), expected) for k, expected in keys.items()]
    with store_of(run_dir) as store:
        labels = {label.query_id: label for label in store.labels()}
    assert sorted(labels) == [1, 2, 3, 4]
    for query_id, expected in asked:
        label = labels[query_id]
        assert (label.answer, label.source, label.labeler) == (expected, "human", "alice")
        assert label.response_time > 0
    assert session.summary()["answers"] == 4
    assert session.summary()["mean_seconds_per_answer"] > 0


def test_click_picks_a_side(tmp_path, session_of):
    run_dir = make_run(tmp_path, queries=2)
    session = session_of(run_dir, labeler="bob")
    for box, expected in ((session.window.right_box, "right"), (session.window.left_box, "left")):
        query_id = on_screen(session)
        pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=box.center, button=1))
        drive(session, lambda: session.current is None or session.current.query.id != query_id)
        with store_of(run_dir) as store:
            assert {lb.query_id: lb.answer for lb in store.labels()}[query_id] == expected


def test_undo_marks_undone_and_shows_the_query_again(tmp_path, session_of):
    run_dir = make_run(tmp_path, queries=3)
    session = session_of(run_dir, labeler="carol")
    first = answer(session, pygame.K_LEFT)
    second = on_screen(session)
    key(pygame.K_BACKSPACE)
    drive(session, lambda: session.undone == 1)
    assert on_screen(session) == first  # the undone query is back on screen
    with store_of(run_dir) as store:
        assert store.labels() == [] and first in [q.id for q in store.pending_queries()]
    assert answer(session, pygame.K_RIGHT) == first
    assert on_screen(session) == second  # then the pair the undo interrupted
    with store_of(run_dir) as store:
        assert [(lb.query_id, lb.answer) for lb in store.labels()] == [(first, "right")]
    assert session.summary() == {"answers": 1, "undone": 1,
                                 "mean_seconds_per_answer": pytest.approx(session._times[first])}


def test_quit_mid_clip_keeps_answers_and_releases_claims(tmp_path):
    run_dir = make_run(tmp_path, queries=4)
    session = lab.LabelingSession(run_dir, labeler="dave")
    try:
        answered = answer(session, pygame.K_UP)
        drive(session, lambda: len(session._ready) > 0)  # the next pair is claimed ahead too
        on_screen(session)
        assert claims(run_dir) == 2  # the pair on screen and the one rendered ahead
        quit_session(session)
    finally:
        result = session.close()
    assert result["answers"] == 1
    assert claims(run_dir) == 0
    with store_of(run_dir) as store:
        assert [lb.query_id for lb in store.labels()] == [answered]
        assert len(store.pending_queries()) == 3
        assert store.claim_next("someone else") is not None  # nothing left reserved


def test_hopper_clips_replay_and_next_pair_is_prefetched(tmp_path, session_of):
    from prefrl.environment import make_env

    env = make_env("Hopper-v5", seed=0)
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=0)

    def clip(steps=10):  # short: software rendering on a busy CI machine is slow
        nonlocal obs, info
        rows = []
        for _ in range(steps):
            act = env.action_space.sample()
            rows.append((obs, act, info["sim_state"]))
            obs, reward, term, trunc, info = env.step(act)
            if term or trunc:
                obs, info = env.reset()
        o, a, s = (np.asarray(x) for x in zip(*rows))
        return Clip(o.astype(np.float32), a.astype(np.float32), rng.normal(size=steps).astype(np.float32),
                    steps, states=s, env_id="Hopper-v5")

    pairs = [(clip(), clip()) for _ in range(3)]
    env.close()
    run_dir = make_run(tmp_path, env_id="Hopper-v5", clips=pairs)
    session = session_of(run_dir, renderer_size=(160, 120))
    on_screen(session)
    assert session.current.left.shape == (10, 120, 160, 3)
    assert session.current.left.std() > 0  # a rendered scene, not a blank
    assert session.current.fps == pytest.approx(125.0)  # Hopper: dt = 0.008 s
    for k in (pygame.K_LEFT, pygame.K_RIGHT):
        drive(session, lambda: len(session._ready) > 0)  # rendered ahead while this one plays
        ahead = session._ready[0]
        answer(session, k)
        assert session.current is ahead  # the key press showed frames rendered earlier: no render in between
    on_screen(session)
    assert len(session.switch_latencies) == 2  # each switch is timed, from the key press to the first frame


def test_two_sessions_answer_different_queries(tmp_path):
    run_dir = make_run(tmp_path, queries=6)
    script = textwrap.dedent("""
        import sys, threading, time, pygame
        from prefrl.ui import labeler
        done = threading.Event()
        def press():  # a labeler pressing Left every 0.25 s until the session ends
            while not done.wait(0.25):
                if pygame.display.get_init():
                    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_LEFT,
                                                         mod=0, unicode="", scancode=0))
        threading.Thread(target=press, daemon=True).start()
        print(labeler.run(sys.argv[1], labeler=sys.argv[2], max_answers=2))
        done.set()
    """)
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    procs = [subprocess.Popen([sys.executable, "-c", script, run_dir, name], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("one", "two")]
    for p in procs:
        out, err = p.communicate(timeout=45)
        assert p.returncode == 0, err
    with store_of(run_dir) as store:
        labels = store.labels()
    by = {name: {lb.query_id for lb in labels if lb.labeler == name} for name in ("one", "two")}
    assert len(by["one"]) == len(by["two"]) == 2 and not by["one"] & by["two"]
    assert claims(run_dir) == 0


def test_no_query_waiting_does_not_block(tmp_path, session_of):
    run_dir = make_run(tmp_path, queries=0)
    session = session_of(run_dir)
    start = time.monotonic()
    for _ in range(5):
        t = time.monotonic()
        assert session.step()
        assert time.monotonic() - t < 0.5
    assert not session.window.showing_pair
    assert "no query waiting" in session.window.message
    status = session.window.status
    assert (status.answers, status.budget, status.waiting, status.trainer) == (0, 100, 0, "training")
    # A query that arrives while waiting shows up within a poll or two.
    with store_of(run_dir) as store:
        rng = np.random.default_rng(1)
        (query,) = store.add_queries([(frame_clip(rng), frame_clip(rng))])
    drive(session, lambda: session.current is not None, timeout=5)
    assert session.current.query.id == query.id and time.monotonic() - start < 5


def test_trainer_state_and_status_line():
    now = 1000.0
    assert lab.trainer_state({"trainer_status": "training", "trainer_heartbeat": "990"}, now) == "training"
    assert lab.trainer_state({"trainer_status": "training", "trainer_heartbeat": "900"}, now) == "not running"
    assert lab.trainer_state({"trainer_status": "finished", "trainer_heartbeat": "1"}, now) == "finished"
    assert lab.trainer_state({}, now) == "not running"
    line = Status(answers=3, budget=50, waiting=2, seconds_per_answer=4.25, trainer="not running").line()
    assert all(s in line for s in ("3 / 50", "2 queries waiting", "4.2 s per answer", "agent not running"))


def test_bad_input_is_a_user_error(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="does not exist"):
        lab.run(tmp_path / "missing")
    with pytest.raises(UserError, match="not a prefrl run"):
        lab.run(tmp_path)
    run_dir = make_run(tmp_path, queries=1)
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(UserError, match="no display for the labeling window: run under Xvfb"):
        lab.run(run_dir)
    assert claims(run_dir) == 0


def test_display_init_failure_is_a_user_error(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path, queries=1)
    monkeypatch.setenv("SDL_VIDEODRIVER", "no-such-driver")
    with pytest.raises(UserError, match="no display for the labeling window"):
        lab.run(run_dir)
