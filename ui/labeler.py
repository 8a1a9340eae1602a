"""One human labeling session on a run: ``python -m prefrl.ui.labeler RUN_DIR``.

Any number of sessions may share a run, each in its own process, alongside the training
process: queries are claimed in the store so no two windows show the same one. Every
answer is committed the moment it is given, so quitting in any way (q, Esc, closing the
window, SIGTERM, Ctrl-C) loses nothing answered; claims on the rest are released and they
stay in the store for the next labeler.

Language runs (env id ``lm:<task>``) are shown as text (:mod:`prefrl.ui.text_window`),
everything else as rendered clips; only the window and what prepares a pair for it differ.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections import deque
from pathlib import Path

from prefrl.clips import Label
from prefrl.errors import UserError
from prefrl.lm.clips import ENV_PREFIX
from prefrl.store import PreferenceStore

from prefrl.ui.prefetch import Prefetcher, Prepared
from prefrl.ui.window import ANSWER_ACTIONS, ComparisonWindow, Status, check_display, trainer_state

STATUS_EVERY_S = 0.5
POLL_S = 0.5
"""How often to look for a new query while none is waiting (about twice a second)."""


def default_labeler() -> str:
    """``user@host:pid``: unique per session, and says who answered."""
    return f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}"


def open_run(run_dir) -> Path:
    """``RUN_DIR/prefs.sqlite``, or a one-line :class:`UserError` if there is no run there."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist: check the path, or start a run there first")
    path = run_dir / "prefs.sqlite"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a prefrl run (no prefs.sqlite): check the path")
    return path


def open_view(run_dir, env_id: str | None, renderer_size: tuple[int, int] = (320, 240)):
    """The window and the pair preparer for a run: text for language runs, clips otherwise.

    The preparer has :class:`Prefetcher`'s interface; the window, :class:`ComparisonWindow`'s.

    Raises:
        UserError: no display, or a text run whose ``RUN_DIR/sft`` holds no tokenizer.
    """
    if (env_id or "").startswith(ENV_PREFIX):
        from prefrl.ui.text_window import TextPreparer, TextWindow, load_tokenizer

        preparer = TextPreparer(load_tokenizer(run_dir))  # before a window opens
        return TextWindow(), preparer
    return ComparisonWindow(renderer_size), Prefetcher(env_id, renderer_size)


class LabelingSession:
    """A window, a store connection and a prefetch thread; :meth:`step` runs one tick.

    Args: as :func:`run`. Call :meth:`close` when done (also on errors).

    Attributes:
        labeler: the name answers are recorded under.
        current: the pair on screen (:class:`Prepared`, or a :class:`~prefrl.ui.text_window.TextPair`
            for text runs), or ``None``.
        switch_latencies: seconds from each answer's key press to the next pair's first
            frame on screen (answers followed by a pair already rendered ahead or not).
    """

    def __init__(self, run_dir, labeler: str | None = None, max_answers: int | None = None,
                 renderer_size: tuple[int, int] = (320, 240)):
        path = open_run(run_dir)
        check_display()  # before opening anything, so a headless call fails cleanly
        self.labeler = labeler or default_labeler()
        self.max_answers = max_answers
        self.store = PreferenceStore(path)
        self.window = None
        self.prefetcher = None
        try:
            self.window, self.prefetcher = open_view(run_dir, self.store.meta.get("env_id"), renderer_size)
            self.prefetcher.start()
        except BaseException:
            self.close()
            raise
        self.held: set[int] = set()  # every query id claimed, released on close
        self.current: Prepared | None = None
        self.switch_latencies: list[float] = []
        self._ready: deque[Prepared] = deque()  # rendered, not yet shown
        self._backlog: deque[Prepared] = deque()  # shown, unanswered, pushed back by an undo
        self._awaiting: int | None = None  # undone query being re-rendered
        self._last: Prepared | None = None  # last answered pair, for an instant undo
        self._times: dict[int, float] = {}  # query id -> response time, this session's answers
        self._answered_at: float | None = None
        self._status_at = self._poll_at = 0.0
        self._stop = False
        self.answers = self.undone = 0

    # -- the loop ---------------------------------------------------------------------------
    def step(self) -> bool:
        """Run one tick: collect rendered pairs, draw, act on one key. False when finished."""
        self._collect()
        if self.current is None:
            self._advance()
        if self.current is None or self.window.shown_at is not None:  # not before a new pair's first frame
            self._claim_ahead()
        if time.monotonic() - self._status_at >= STATUS_EVERY_S:
            self._refresh_status()
        event = self.window.tick()
        if self._answered_at is not None and self.window.shown_at is not None:
            self.switch_latencies.append(self.window.shown_at - self._answered_at)
            self._answered_at = None
        if event is not None:
            self._act(*event)
        done = self.max_answers is not None and self.answers >= self.max_answers
        return not (self._stop or done)

    def request_stop(self) -> None:
        """End the session after the current tick (safe from a signal handler)."""
        self._stop = True

    def _act(self, action: str, when: float) -> None:
        if action == "quit":
            self._stop = True
        elif action == "undo":
            self._undo()
        elif action in ANSWER_ACTIONS and self.current is not None:
            shown = self.window.shown_at
            if shown is None or when < shown:
                return  # pressed before this pair was on screen
            query = self.current.query
            self.store.record(Label(query.id, action, "human", self.labeler, when - shown))
            self.answers += 1
            self._times[query.id] = when - shown
            self._last, self.current = self.current, None
            self._answered_at = when  # the key press: includes committing the answer
            self._advance()
            self._status_at = 0.0  # the counts just changed

    def _undo(self) -> None:
        label = self.store.undo_last(self.labeler)
        if label is None:
            return
        self.undone += 1
        self.answers -= 1
        self._times.pop(label.query_id, None)
        self.held.add(label.query_id)  # never claimed again as a new one
        if self.current is not None:
            self._backlog.appendleft(self.current)  # shown again right after the undone one
            self.current = None
        if self._last is not None and self._last.query.id == label.query_id:
            self._show(self._last)
        else:  # undone further back, or answered in an earlier session: render it again
            query = next(q for q in self.store.pending_queries() if q.id == label.query_id)
            self._awaiting = query.id
            self._render(query)
            self.window.show_waiting("loading the undone query …")
        self._last = None
        self._status_at = 0.0

    def _collect(self) -> None:
        """Move rendered pairs from the prefetch thread to this one; re-raise its errors."""
        while True:
            try:
                item = self.prefetcher.results.get_nowait()
            except queue.Empty:
                return
            self.prefetcher.pending -= 1
            if isinstance(item, BaseException):
                raise item
            if item.query.id == self._awaiting:
                self._awaiting = None
                self._show(item)
            else:
                self._ready.append(item)

    def _advance(self) -> None:
        """Show the next pair: one pushed back by an undo first, then prefetched ones."""
        if self._awaiting is not None:
            return
        if self._backlog:
            self._show(self._backlog.popleft())
        elif self._ready:
            self._show(self._ready.popleft())
        else:
            self.window.show_waiting(self._waiting_message())

    def _claim_ahead(self) -> None:
        """Keep one claimed pair rendering or rendered beyond the one on screen.

        Claims are made here, on the session's one store connection, not in the render
        thread (see :mod:`prefrl.ui.prefetch`); while the store has nothing to claim it is
        asked again every :data:`POLL_S`.
        """
        if self.prefetcher.pending + len(self._ready) >= 1 or time.monotonic() < self._poll_at:
            return
        query = self.store.claim_next(self.labeler, exclude=tuple(self.held))
        if query is None:
            self._poll_at = time.monotonic() + POLL_S
            return
        self.held.add(query.id)
        self._render(query)

    def _render(self, query) -> None:
        self.prefetcher.render(query, self.store.get_clip(query.left_id), self.store.get_clip(query.right_id))

    def _show(self, item: Prepared) -> None:
        self.current = item
        self.window.present(item)

    # -- status -----------------------------------------------------------------------------
    def _refresh_status(self) -> None:
        meta = self.store.meta
        budget = meta.get("label_budget")
        times = list(self._times.values())
        self.window.status = Status(
            answers=self.store.num_answers(),
            budget=int(budget) if budget and budget.isdigit() else None,
            waiting=len(self.store.pending_queries()),
            seconds_per_answer=sum(times) / len(times) if times else None,
            trainer=trainer_state(meta))
        if self.current is None and self._awaiting is None:
            self.window.show_waiting(self._waiting_message())
        self._status_at = time.monotonic()

    def _waiting_message(self) -> str:
        if self.window.status.trainer == "finished":
            return "training finished — no more queries will come (q quits)"
        return "no query waiting — the agent is collecting experience"

    # -- the end ----------------------------------------------------------------------------
    def summary(self) -> dict:
        """``{"answers", "undone", "mean_seconds_per_answer"}`` for this session."""
        times = list(self._times.values())
        return {"answers": self.answers, "undone": self.undone,
                "mean_seconds_per_answer": sum(times) / len(times) if times else None}

    def close(self) -> dict:
        """Close the window, stop prefetching and release every claim still held."""
        if self.window is not None:
            self.window.close()
        if self.prefetcher is not None:
            self.prefetcher.stop()
        held = getattr(self, "held", set())
        if held:  # claims on answered queries mean nothing: release only the unanswered
            for query in self.store.pending_queries():
                if query.id in held:
                    self.store.release(query.id, self.labeler)
        self.store.close()
        return self.summary() if hasattr(self, "answers") else {}


def run(run_dir, labeler: str | None = None, max_answers: int | None = None,
        renderer_size: tuple[int, int] = (320, 240)) -> dict:
    """Label queries of the run in ``run_dir`` in a window until quit (or ``max_answers``).

    Returns:
        ``{"answers": n, "undone": k, "mean_seconds_per_answer": s}``: answers this
        session recorded and did not undo, undos, and their mean response time (``None``
        without answers).

    Raises:
        UserError: no run in ``run_dir``, no display to open the window on, or a text run
            without its tokenizer in ``RUN_DIR/sft``.
    """
    session = LabelingSession(run_dir, labeler, max_answers, renderer_size)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: session.request_stop())
    try:
        while session.step():
            pass
    except KeyboardInterrupt:
        pass  # Ctrl-C is a way to quit: answers are committed already
    finally:
        result = session.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return result


def command_line(run, prog: str, description: str, argv: list[str] | None = None) -> int:
    """``python -m prefrl.ui.<labeler> RUN_DIR [--labeler NAME] [--max-answers N]``, for any labeler's ``run``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("run_dir")
    parser.add_argument("--labeler", help="name recorded with each answer (default user@host:pid)")
    parser.add_argument("--max-answers", type=int, help="stop after this many answers")
    args = parser.parse_args(argv)
    try:
        result = run(args.run_dir, args.labeler, args.max_answers)
    except UserError as e:
        print(f"prefrl: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_line(run, "python -m prefrl.ui.labeler", "Answer a run's preference queries in a window.", argv)


if __name__ == "__main__":
    sys.exit(main())
