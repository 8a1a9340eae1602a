"""The comparison window: two clips side by side, looping in sync, answered with one key.

The window knows nothing about the store or rendering: it is given frames and a status,
and each :meth:`ComparisonWindow.tick` handles pending events, draws one frame and hands
back at most one action. That keeps it drivable from tests with posted events, and lets
the labeling session (``prefrl.ui.labeler``) decide what an action means.

Keys: ← left is better, → right is better, ↑ equal, ↓ can't tell, space replays from the
start, backspace undoes the last answer, q / Esc / closing the window quits. Clicking a
clip picks it.
"""
from __future__ import annotations

import os
import sys
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # keep the terminal for our own messages
import pygame  # noqa: E402

from prefrl.display import require_display
from prefrl.errors import UserError

NO_DISPLAY = ("no display for the labeling window: run under Xvfb (xvfb-run ...) "
              "or use a synthetic --oracle")
TITLE = "prefrl: which clip is better?"  # ASCII: xdotool and some WMs mangle UTF-8 titles
ANSWER_ACTIONS = ("left", "right", "equal", "incomparable")
"""Actions that answer the pair on screen (the values of :data:`prefrl.clips.ANSWERS`)."""

_KEYS = {pygame.K_LEFT: "left", pygame.K_RIGHT: "right", pygame.K_UP: "equal",
         pygame.K_DOWN: "incomparable", pygame.K_BACKSPACE: "undo",
         pygame.K_q: "quit", pygame.K_ESCAPE: "quit", pygame.K_SPACE: "replay"}

_BG, _PANEL, _TEXT, _DIM = (24, 26, 31), (38, 41, 48), (226, 228, 233), (140, 146, 158)
_ACCENT, _ENDED = (96, 165, 250), (88, 92, 102)
_MARGIN, _HEADER, _BAR, _LINE = 16, 30, 4, 24
HEARTBEAT_STALE_S = 60.0
"""A trainer heartbeat older than this means the agent is not running."""


@dataclass
class Status:
    """What the status line says.

    Attributes:
        answers: current answers in the store (all labelers, oracles included).
        budget: the run's label budget, or ``None`` if unknown.
        waiting: queries waiting for an answer.
        seconds_per_answer: this labeler's mean response time, ``None`` before any answer.
        trainer: ``"training"``, ``"finished"`` or ``"not running"``.
    """

    answers: int = 0
    budget: int | None = None
    waiting: int = 0
    seconds_per_answer: float | None = None
    trainer: str = "not running"

    def line(self) -> str:
        """The status line as shown at the bottom of the window."""
        budget = "?" if self.budget is None else str(self.budget)
        pace = "–" if self.seconds_per_answer is None else f"{self.seconds_per_answer:.1f} s"
        agent = {"training": "agent training", "finished": "training finished"}.get(
            self.trainer, "agent not running")
        return (f"answers {self.answers} / {budget}   ·   {self.waiting} queries waiting   ·   "
                f"{pace} per answer   ·   {agent}")


def trainer_state(meta: dict[str, str], now: float | None = None) -> str:
    """``"training"``, ``"finished"`` or ``"not running"`` from the trainer's meta keys."""
    if meta.get("trainer_status") == "finished":
        return "finished"
    try:
        beat = float(meta.get("trainer_heartbeat", ""))
    except ValueError:
        return "not running"
    fresh = (time.time() if now is None else now) - beat <= HEARTBEAT_STALE_S
    return "training" if fresh and meta.get("trainer_status", "training") == "training" else "not running"


def check_display() -> None:
    """Raise :class:`UserError` where SDL has nowhere to open a window (before pygame's
    own, obscure, error)."""
    require_display(NO_DISPLAY)


class ComparisonWindow:
    """A pygame window showing one pair of clips at a time.

    Args:
        clip_size: ``(width, height)`` of each clip's box in pixels; frames of another
            size are scaled to fit, keeping their aspect ratio.
        max_fps: drawing rate cap; also bounds how long :meth:`tick` sleeps (1 / max_fps).

    Raises:
        UserError: there is no display to open the window on.
    """

    LEGEND = (("←", "Left", "left better"), ("→", "Right", "right better"), ("↑", "Up", "equal"),
              ("↓", "Down", "can't tell"), ("space", "Space", "replay"), ("⌫", "Backspace", "undo"),
              ("q", "Q", "quit"))
    """The key legend: ``(key as drawn with DejaVu, key in ASCII, what it does)``."""

    def __init__(self, clip_size: tuple[int, int] = (320, 240), max_fps: int = 60):
        check_display()
        # X11 window class "prefrl" instead of the script name pygame's import puts there
        # (a user's own setting stays): window managers and `xdotool search --class prefrl`
        # find it, where Debian's xdotool cannot match SDL's UTF-8 name with `--name`.
        if os.environ.get("SDL_VIDEO_X11_WMCLASS") in (None, os.path.basename(sys.argv[0])):
            os.environ["SDL_VIDEO_X11_WMCLASS"] = "prefrl"
        try:
            pygame.display.init()
            pygame.font.init()
            self.clip_w, self.clip_h = int(clip_size[0]), int(clip_size[1])
            width = 3 * _MARGIN + 2 * self.clip_w
            height = _MARGIN + _HEADER + self.clip_h + _BAR + 18 + 2 * _LINE + _MARGIN
            self.screen = pygame.display.set_mode((width, height))
        except pygame.error as e:
            raise UserError(f"{NO_DISPLAY} ({e})") from None
        pygame.display.set_caption(TITLE)
        # DejaVu has the arrow glyphs; pygame's bundled font draws them as boxes.
        path = pygame.font.match_font("dejavusans")
        self._arrows = path is not None
        self._font = pygame.font.Font(path, 15)
        self._big = pygame.font.Font(path, 20)
        self._clock = pygame.time.Clock()
        self._max_fps = max_fps
        self._actions: deque[tuple[str, float]] = deque()
        self.status = Status()
        self.left_box = pygame.Rect(_MARGIN, _MARGIN + _HEADER, self.clip_w, self.clip_h)
        self.right_box = self.left_box.move(self.clip_w + _MARGIN, 0)
        self._pair: tuple[np.ndarray, np.ndarray] | None = None
        self._lengths = (0, 0)
        self._cache: dict[tuple[int, int], pygame.Surface] = {}
        self._fps = 30.0
        self._start = 0.0
        self.shown_at: float | None = None  # monotonic time the pair first reached the screen
        self.message = "no query waiting — the agent is collecting experience"

    # -- what to show ---------------------------------------------------------------------
    def present(self, item) -> None:
        """Show a :class:`prefrl.ui.prefetch.Prepared` pair (the labeling session's call)."""
        self.show(item.left, item.right, item.fps, item.lengths)

    def show(self, left: np.ndarray, right: np.ndarray, fps: float,
             lengths: tuple[int, int] | None = None) -> None:
        """Start looping a new pair from its first frame.

        Args:
            left, right: uint8 frames ``[T, H, W, 3]``.
            fps: playback rate in frames per second (the env's real-time rate).
            lengths: real (unpadded) steps of each clip; later frames are marked "ended".
        """
        self._pair = (left, right)
        self._lengths = lengths or (len(left), len(right))
        self._fps = float(fps) if fps and fps > 0 else 30.0
        self._cache.clear()
        self._start = time.monotonic()
        self.shown_at = None  # set when the first frame is actually drawn
        # A key pressed before this pair appeared was meant for the previous one.
        self._actions = deque(a for a in self._actions if a[0] not in ANSWER_ACTIONS)

    def show_waiting(self, message: str | None = None) -> None:
        """Show the "no query waiting" screen instead of a pair."""
        self._pair = None
        self.shown_at = None
        self._cache.clear()
        if message:
            self.message = message

    @property
    def showing_pair(self) -> bool:
        """Whether a pair (rather than the waiting screen) is on screen."""
        return self._pair is not None

    # -- the loop ---------------------------------------------------------------------------
    def tick(self) -> tuple[str, float] | None:
        """Handle pending events, draw one frame, and return the next action, if any.

        Returns ``(action, when)``: action one of ``left right equal incomparable undo
        quit``, ``when`` the ``time.monotonic()`` at which its event was taken from the
        queue. Replay is handled here. Never blocks longer than one frame interval.
        """
        for event in pygame.event.get():
            now = time.monotonic()
            action = self._action(event)
            if action == "replay":
                self._start = now
            elif action in ANSWER_ACTIONS and self._pair is None:
                pass  # nothing on screen to answer
            elif action is not None:
                self._actions.append((action, now))
        self._draw()
        self._clock.tick(self._max_fps)
        return self._actions.popleft() if self._actions else None

    def close(self) -> None:
        """Close the window (safe to call twice)."""
        pygame.display.quit()

    def _action(self, event) -> str | None:
        """The action an event stands for, if any (subclasses add their own events here)."""
        if event.type == pygame.QUIT:
            return "quit"
        if event.type == pygame.KEYDOWN:
            return _KEYS.get(event.key)
        if event.type == pygame.MOUSEBUTTONDOWN and event.button == 1:
            return ("left" if self.left_box.collidepoint(event.pos) else
                    "right" if self.right_box.collidepoint(event.pos) else None)
        return None

    # -- drawing ----------------------------------------------------------------------------
    def _draw(self) -> None:
        screen = self.screen
        screen.fill(_BG)
        if self._pair is None:
            self._draw_waiting()
        else:
            self._draw_pair()
        y = self.left_box.bottom + _BAR + 18
        self._legend(screen.get_width() // 2, y)
        self._text(self.status.line(), (screen.get_width() // 2, y + _LINE), _TEXT, center=True)
        pygame.display.flip()
        if self._pair is not None and self.shown_at is None:
            self.shown_at = time.monotonic()

    def _draw_pair(self) -> None:
        step = int((time.monotonic() - self._start) * self._fps)
        for side, (frames, box, length) in enumerate(zip(self._pair, (self.left_box, self.right_box),
                                                        self._lengths)):
            self._draw_clip(side, frames, box, length, step)

    def _draw_clip(self, side: int, frames: np.ndarray, box: pygame.Rect, length: int, step: int) -> None:
        index = step % len(frames)
        name = ("← LEFT" if self._arrows else "LEFT") if side == 0 else ("RIGHT →" if self._arrows else "RIGHT")
        self._text(name, (box.centerx, _MARGIN + 4), _TEXT, center=True, font=self._big)
        pygame.draw.rect(self.screen, _PANEL, box)
        surf = self._frame(side, frames, index)
        self.screen.blit(surf, surf.get_rect(center=box.center))
        if index >= length:
            # Padded steps after the episode ended repeat its last frame; say so.
            self._text("episode ended", (box.centerx, box.bottom - 22), _TEXT, center=True)
        # Playback position; the part after the episode's end is drawn dimmer.
        bar = pygame.Rect(box.left, box.bottom + 2, box.width, _BAR)
        pygame.draw.rect(self.screen, _PANEL, bar)
        ended = int(box.width * min(length, len(frames)) / len(frames))
        pygame.draw.rect(self.screen, _ENDED, bar.inflate(0, 0).move(ended, 0).clip(bar))
        pygame.draw.rect(self.screen, _ACCENT, (bar.left, bar.top, int(box.width * (index + 1) / len(frames)), _BAR))

    def _frame(self, side: int, frames: np.ndarray, index: int) -> pygame.Surface:
        """Frame ``index`` as a surface scaled into the clip box, converted once per pair."""
        key = (side, index)
        if key not in self._cache:
            frame = np.ascontiguousarray(frames[index, :, :, :3])
            surf = pygame.surfarray.make_surface(frame.swapaxes(0, 1))
            h, w = frame.shape[:2]
            scale = min(self.clip_w / w, self.clip_h / h)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            self._cache[key] = pygame.transform.smoothscale(surf, size) if size != (w, h) else surf
        return self._cache[key]

    def _legend(self, centerx: int, y: int) -> None:
        """The key legend, keys bright and what they do dim, centred on ``centerx``."""
        parts = []
        for glyph, name, what in self.LEGEND:
            parts += [((glyph if self._arrows else name) + " ", _TEXT), (what + "     ", _DIM)]
        parts[-1] = (self.LEGEND[-1][2], _DIM)
        surfs = [self._font.render(text, True, color) for text, color in parts]
        x = centerx - sum(s.get_width() for s in surfs) // 2
        for surf in surfs:
            self.screen.blit(surf, surf.get_rect(midleft=(x, y)))
            x += surf.get_width()

    def _draw_waiting(self) -> None:
        area = self.left_box.union(self.right_box)
        pygame.draw.rect(self.screen, _PANEL, area)
        self._text(self.message, area.center, _TEXT, center=True, font=self._big)
        self._text("this window checks for new queries twice a second",
                   (area.centerx, area.centery + 30), _DIM, center=True)

    def _text(self, text: str, pos: tuple[int, int], color, *, center: bool = False, font=None) -> None:
        surf = (font or self._font).render(text, True, color)
        rect = surf.get_rect(center=pos) if center else surf.get_rect(topleft=pos)
        self.screen.blit(surf, rect)
