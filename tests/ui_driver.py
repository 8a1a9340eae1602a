"""Driving a labeling session under SDL's dummy driver: posted keys, ticks until a condition holds.

Shared by tests/test_ui.py (clip window) and tests/test_text_ui.py (text window).
"""
from __future__ import annotations

import os
import sqlite3
import time

import pygame


def claims(run_dir) -> int:
    """Claims on unanswered queries (a claim left on an answered one blocks nothing)."""
    with sqlite3.connect(os.path.join(run_dir, "prefs.sqlite")) as db:
        return db.execute("SELECT count(*) FROM claims c WHERE NOT EXISTS (SELECT 1 FROM answers a"
                          " WHERE a.query_id = c.query_id AND a.status = 'current')").fetchone()[0]


def drive(session, until, timeout=15.0) -> None:
    """Tick the session until ``until()`` holds."""
    end = time.monotonic() + timeout
    while not until():
        assert session.step(), "session ended early"
        assert time.monotonic() < end, "timed out driving the window"


def on_screen(session, ticks=3) -> int:
    """Wait for a pair on screen (and a few more frames, so answers take some time); its query id."""
    drive(session, lambda: session.current is not None and session.window.shown_at is not None)
    for _ in range(ticks):
        session.step()
    return session.current.query.id


def key(k) -> None:
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=k, mod=0, unicode="", scancode=0))


def quit_session(session, timeout: float = 5.0) -> None:
    """Press q and tick until the session ends, which it must within ``timeout`` seconds."""
    key(pygame.K_q)
    end = time.monotonic() + timeout
    while session.step():
        assert time.monotonic() < end, "the session did not end after q"
