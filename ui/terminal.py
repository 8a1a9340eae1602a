"""Answering a text run's queries in a terminal: ``python -m prefrl.ui.terminal RUN_DIR``.

For when no window can open (ssh without X forwarding, a server console). It works on the
store exactly as the window does: queries are claimed so terminal and window sessions can
share a run, every answer is committed at once under the labeler's name with source
``"human"`` and its response time (from the pair being printed to its line being read),
and quitting in any way (q, end of input, Ctrl-C, SIGTERM) releases the claims on the rest.

One line per answer: ``1``/``l`` the first (left) response is better, ``2``/``r`` the
second (right), ``=``/``e`` equal, ``?``/``x`` can't tell, ``u`` undo the last answer,
``q`` quit. Clips of control runs need the window.
"""
from __future__ import annotations

import io
import select
import signal
import sys
import threading
import time
from collections import deque

from prefrl.clips import Label, Query
from prefrl.errors import UserError
from prefrl.lm.clips import ENV_PREFIX
from prefrl.store import PreferenceStore

from prefrl.ui.labeler import POLL_S, command_line, default_labeler, open_run
from prefrl.ui.text_window import TextPair, load_tokenizer, pair_text
from prefrl.ui.window import Status, trainer_state

KEYS = {"1": "left", "l": "left", "2": "right", "r": "right", "=": "equal", "e": "equal",
        "?": "incomparable", "x": "incomparable", "u": "undo", "q": "quit"}
"""What each answer line means (case and surrounding spaces are ignored)."""
HINT = "type 1 or l (1 is better), 2 or r (2 is better), = or e (equal), ? or x (can't tell), u (undo), q (quit)"
ASK = "better? [1 2 = ? u q] > "
TEXT_ONLY = "the terminal labeler shows text runs only: use the window (prefrl label RUN_DIR)"


class TerminalSession:
    """One labeler answering in a terminal; :meth:`run` asks until quit.

    Args:
        store: the run's open store.
        tokenizer: the run's tokenizer (:func:`~prefrl.ui.text_window.load_tokenizer`).
        labeler: the name answers are recorded under.
        stdin, stdout: where answers are read and pairs printed.
        poll_s: how often to look for a query while none is waiting.
    """

    def __init__(self, store: PreferenceStore, tokenizer, labeler: str, stdin, stdout, poll_s: float = POLL_S):
        self.store, self.tokenizer, self.labeler = store, tokenizer, labeler
        self.stdin, self.stdout, self.poll_s = stdin, stdout, poll_s
        # A terminal echoes what is typed; piped input is echoed here, so the transcript reads the same.
        self._echo = not (hasattr(stdin, "isatty") and stdin.isatty())
        self.held: set[int] = set()  # every query claimed, released on close
        self.backlog: deque[Query] = deque()  # shown again first: an undone query, the one it interrupted
        self.times: dict[int, float] = {}  # query id -> response time, this session's answers
        self.answers = self.undone = 0

    def run(self, max_answers: int | None = None) -> None:
        """Show pairs and record answers until ``q``, end of input or ``max_answers``."""
        waiting = False
        while max_answers is None or self.answers < max_answers:
            query = self._next()
            if query is None:
                if not waiting:
                    self._say(self._waiting_message())
                    waiting = True
                if not self._waiting_turn():
                    return
                continue
            waiting = False
            self._show(pair_text(self.tokenizer, query, self.store.get_clip(query.left_id),
                                 self.store.get_clip(query.right_id)))
            shown = time.monotonic()
            action, when = self._ask()
            if action == "quit":
                return
            if action == "undo":
                self.backlog.appendleft(query)  # asked again right after the undone one
                self._undo()
                continue
            self.store.record(Label(query.id, action, "human", self.labeler, when - shown))
            self.answers += 1
            self.times[query.id] = when - shown

    def _next(self) -> Query | None:
        if self.backlog:
            return self.backlog.popleft()
        query = self.store.claim_next(self.labeler, exclude=tuple(self.held))
        if query is not None:
            self.held.add(query.id)
        return query

    def _ask(self) -> tuple[str, float]:
        """Read lines until one is an action: ``(action, when read)``; end of input quits."""
        while True:
            self._say(ASK, end="")
            line = self.stdin.readline()
            when = time.monotonic()
            if self._echo or not line:
                self._say(line.rstrip("\n"))
            if not line:
                return "quit", when
            action = KEYS.get(line.strip().lower())
            if action is not None:
                return action, when
            self._say(f"{line.strip()!r} is not an answer: {HINT}")

    def _waiting_turn(self) -> bool:
        """Wait up to ``poll_s`` for a line while no query is waiting; False to quit."""
        if not _line_ready(self.stdin, self.poll_s):
            return True
        line = self.stdin.readline()
        if self._echo and line.strip():
            self._say(f"> {line.strip()}")
        action = KEYS.get(line.strip().lower()) if line else "quit"
        if action == "quit":
            return False
        if action == "undo":
            self._undo()
        elif line.strip():
            self._say(f"no query to answer yet ({line.strip()!r}): u undoes, q quits")
        return True

    def _undo(self) -> None:
        label = self.store.undo_last(self.labeler)
        if label is None:
            self._say("nothing to undo")
            return
        self.undone += 1
        self.answers -= 1
        self.times.pop(label.query_id, None)
        self.held.add(label.query_id)  # never claimed again as a new one
        self.backlog.appendleft(next(q for q in self.store.pending_queries() if q.id == label.query_id))
        self._say(f"undone: your {label.answer!r} answer; here it is again")

    # -- output ---------------------------------------------------------------------------------
    def _show(self, pair: TextPair) -> None:
        self._say("\n" + self._status().line())
        for title, text in (("prompt", pair.prompt), ("1 (left)", pair.left), ("2 (right)", pair.right)):
            self._say(f"── {title} " + "─" * max(3, 40 - len(title)))
            self._say(text if text.strip() else "(empty)")

    def _status(self) -> Status:
        meta = self.store.meta
        budget = meta.get("label_budget")
        times = list(self.times.values())
        return Status(answers=self.store.num_answers(),
                      budget=int(budget) if budget and budget.isdigit() else None,
                      waiting=len(self.store.pending_queries()),
                      seconds_per_answer=sum(times) / len(times) if times else None,
                      trainer=trainer_state(meta))

    def _waiting_message(self) -> str:
        if trainer_state(self.store.meta) == "finished":
            return "training finished: no more queries will come (q quits)"
        return f"no query waiting: checking every {self.poll_s:g} s (q quits)"

    def _say(self, text: str, end: str = "\n") -> None:
        try:
            self.stdout.write(text + end)
        except UnicodeEncodeError:  # a terminal that cannot show the text: escapes beat a crash
            self.stdout.write((text + end).encode("ascii", "backslashreplace").decode("ascii"))
        self.stdout.flush()

    # -- the end --------------------------------------------------------------------------------
    def summary(self) -> dict:
        """``{"answers", "undone", "mean_seconds_per_answer"}``, as the window's session."""
        times = list(self.times.values())
        return {"answers": self.answers, "undone": self.undone,
                "mean_seconds_per_answer": sum(times) / len(times) if times else None}

    def release(self) -> None:
        """Release the claims on every held query still unanswered."""
        for query in self.store.pending_queries():
            if query.id in self.held:
                self.store.release(query.id, self.labeler)


def _line_ready(stdin, timeout: float) -> bool:
    """Whether a line (or end of input) can be read within ``timeout`` seconds."""
    try:
        return bool(select.select([stdin.fileno()], [], [], timeout)[0])
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return True  # an in-memory stream, or no select() for it: reading does not wait


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def run(run_dir, labeler: str | None = None, max_answers: int | None = None,
        stdin=None, stdout=None) -> dict:
    """Label the text run in ``run_dir`` from a terminal until quit (or ``max_answers``).

    Args:
        stdin, stdout: text streams to read answers from and print pairs to
            (default ``sys.stdin`` / ``sys.stdout``).

    Returns:
        ``{"answers": n, "undone": k, "mean_seconds_per_answer": s}``, as
        :func:`prefrl.ui.labeler.run`.

    Raises:
        UserError: no run in ``run_dir``, not a text run, or no tokenizer in ``RUN_DIR/sft``.
    """
    path = open_run(run_dir)
    with PreferenceStore(path) as store:
        if not (store.meta.get("env_id") or "").startswith(ENV_PREFIX):
            raise UserError(TEXT_ONLY)
        session = TerminalSession(store, load_tokenizer(run_dir), labeler or default_labeler(),
                                  sys.stdin if stdin is None else stdin, sys.stdout if stdout is None else stdout)
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            session.run(max_answers)
        except KeyboardInterrupt:
            session._say("")  # Ctrl-C is a way to quit: answers are committed already
        finally:
            session.release()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return session.summary()


def main(argv: list[str] | None = None) -> int:
    return command_line(run, "python -m prefrl.ui.terminal", "Answer a text run's preference queries in the terminal.",
                        argv)


if __name__ == "__main__":
    sys.exit(main())
