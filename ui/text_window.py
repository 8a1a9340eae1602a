"""Text runs in a window: the prompt on top, two responses side by side, one key to answer.

A language run's clips hold token ids (:mod:`prefrl.lm.clips`). :class:`TextPreparer`
decodes a claimed pair with the run's own tokenizer (``RUN_DIR/sft``) and
:class:`TextWindow` lays it out. The window is the clip window with its drawing swapped:
the same keys (space has nothing to replay), clicks, status line and waiting screen, so
:class:`prefrl.ui.labeler.LabelingSession` drives either one the same way.

Chinese needs a font with CJK glyphs, yet Latin fonts have none and CJK fallback fonts
(Droid Sans Fallback) have no Latin; so each character is drawn with the first of
:class:`Fonts` that has it: DejaVu Sans (or pygame's default) first, then a CJK font found
at run time (:func:`find_cjk_font`).
"""
from __future__ import annotations

import functools
import itertools
import os
import queue
import subprocess
import unicodedata
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pygame
import pygame.freetype

from prefrl.clips import Clip, Query
from prefrl.errors import UserError
from prefrl.lm.clips import clip_text
from prefrl.ui.window import (_ACCENT, _DIM, _HEADER, _MARGIN, _PANEL, _TEXT, ANSWER_ACTIONS,
                              ComparisonWindow)

TITLE = "prefrl: which response is better?"
CJK_FONT_PATHS = (
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",  # Debian: fonts-droid-fallback
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # Debian: fonts-noto-cjk
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",  # Arch
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",  # Fedora
    "/System/Library/Fonts/PingFang.ttc",  # macOS
    "C:/Windows/Fonts/msyh.ttc",  # Windows
)
"""Where CJK fonts usually are, tried after fontconfig's answers."""
NO_CJK_FONT = "no CJK font found: Chinese shows as boxes (apt install fonts-noto-cjk)"
CJK_PROBE = "你好中文"
"""Characters a font must draw to count as showing Chinese."""
PROMPT_ROWS = 4
"""Text lines the prompt box holds before it scrolls."""
_PAD, _WARN = 8, (250, 204, 21)
# Closing CJK punctuation never starts a line (a simplified kinsoku rule): it takes the
# character before it along to the next line.
_NO_LINE_START = set("，。、；：！？）」』》】〉〕｝")


# -- text pairs ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TextPair:
    """A query decoded for showing: what :class:`TextWindow` and the terminal show.

    ``prompt`` is the prompt both responses answer (both prompts, labelled, in the odd
    case that they differ).
    """

    query: Query
    prompt: str
    left: str
    right: str


def load_tokenizer(run_dir):
    """The tokenizer saved with the run's SFT model in ``RUN_DIR/sft``.

    Raises:
        UserError: there is no tokenizer there (or transformers is not installed).
    """
    folder = Path(run_dir) / "sft"
    files = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
    if not any((folder / name).is_file() for name in files):
        raise UserError(f"{folder} holds no tokenizer, needed to show this text run's clips: "
                        f"save the SFT tokenizer there with save_pretrained")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise UserError("showing text runs needs transformers: pip install 'prefrl[lm]'") from None
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, TypeError, ... here
        raise UserError(f"{folder}: cannot load its tokenizer ({type(exc).__name__}); "
                        f"save it again with save_pretrained") from None


def pair_text(tokenizer, query: Query, left: Clip, right: Clip) -> TextPair:
    """Decode a query's two text clips (see :func:`prefrl.lm.clips.clip_text`)."""
    (prompt, left_text), (right_prompt, right_text) = clip_text(tokenizer, left), clip_text(tokenizer, right)
    if right_prompt != prompt:
        prompt = f"1 (left): {prompt}\n2 (right): {right_prompt}"
    return TextPair(query, prompt, left_text, right_text)


class TextPreparer:
    """Decodes claimed pairs for the labeling session, with :class:`~prefrl.ui.prefetch.Prefetcher`'s
    interface but no thread: decoding takes well under a millisecond.

    Args:
        tokenizer: the run's tokenizer (:func:`load_tokenizer`).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.results: queue.Queue = queue.Queue()
        self.pending = 0  # handed over and not yet collected, as for the Prefetcher

    def render(self, query: Query, left: Clip, right: Clip) -> None:
        """Decode a pair and put its :class:`TextPair` on :attr:`results`."""
        self.pending += 1
        self.results.put(pair_text(self.tokenizer, query, left, right))

    def start(self) -> None:
        """Nothing to start."""

    def stop(self, timeout: float = 0.0) -> None:
        """Nothing to stop."""


# -- fonts and wrapping -------------------------------------------------------------------------
def has_glyphs(path: str | None, text: str) -> bool:
    """Whether the font file at ``path`` (``None``: pygame's default) has a glyph for every character."""
    pygame.freetype.init()
    try:
        face = pygame.freetype.Font(path, 16)
    except (OSError, pygame.error):
        return False
    return all(m is not None for m in face.get_metrics(text))


def _fontconfig(*args: str) -> list[str]:
    """Font files named by a fontconfig command, one a line (none without fontconfig)."""
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip().rstrip(":").strip() for line in out.splitlines() if line.strip()]


@functools.lru_cache(maxsize=None)
def find_cjk_font() -> str | None:
    """A font file that draws Chinese, or ``None``.

    Tried in order: fontconfig's choice for Chinese (which may be a Latin font when no CJK
    font is installed, hence the check), every font fontconfig lists for Chinese, then
    :data:`CJK_FONT_PATHS`.
    """
    candidates = [*_fontconfig("fc-match", "-f", "%{file}", ":lang=zh"),
                  *sorted(_fontconfig("fc-list", ":lang=zh", "file")), *CJK_FONT_PATHS]
    return next((p for p in candidates if os.path.isfile(p) and has_glyphs(p, CJK_PROBE)), None)


class Fonts:
    """Fonts tried in order for each character: the first with its glyph draws it.

    Args:
        paths: font files, Latin first (``None``: pygame's default font).
        size: text size in pixels.

    Attributes:
        linesize: pixels from one line of text to the next.
    """

    def __init__(self, paths: list[str | None], size: int):
        pygame.font.init()
        pygame.freetype.init()
        self.fonts = [pygame.font.Font(p, size) for p in paths]
        self._faces = [pygame.freetype.Font(p, size) for p in paths]  # pygame.font cannot say which glyphs it has
        self._ascent = max(f.get_ascent() for f in self.fonts)
        self._height = max(self._ascent - f.get_ascent() + f.get_height() for f in self.fonts)
        self.linesize = max([self._height] + [f.get_linesize() for f in self.fonts])
        self._which: dict[str, int] = {}

    def _index(self, ch: str) -> int:
        if ch not in self._which:
            self._which[ch] = next((i for i, face in enumerate(self._faces)
                                    if face.get_metrics(ch)[0] is not None), 0)
        return self._which[ch]

    def covers(self, text: str) -> bool:
        """Whether some font has a glyph for every character of ``text``."""
        return all(any(face.get_metrics(ch)[0] is not None for face in self._faces) for ch in text)

    def runs(self, text: str) -> list[tuple[pygame.font.Font, str]]:
        """``text`` split into runs drawn with one font each."""
        return [(self.fonts[i], "".join(chars)) for i, chars in itertools.groupby(text, key=self._index)]

    def width(self, text: str) -> int:
        """Width in pixels of ``text`` as :meth:`render` draws it."""
        return sum(font.size(run)[0] for font, run in self.runs(text))

    def render(self, text: str, color) -> pygame.Surface:
        """One line of text on a transparent surface, runs aligned on a common baseline."""
        surf = pygame.Surface((max(1, self.width(text)), self._height), pygame.SRCALPHA)
        x = 0
        for font, run in self.runs(text):
            surf.blit(font.render(run, True, color), (x, self._ascent - font.get_ascent()))
            x += font.size(run)[0]
        return surf


def _clean(text: str) -> str:
    """Newlines as ``\\n``, tabs as spaces, other control characters as U+FFFD (shown, not dropped)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(4)
    return "".join("\ufffd" if ch != "\n" and unicodedata.category(ch) == "Cc" else ch for ch in text)


def _kind(ch: str) -> str:
    if ch.isspace():
        return "space"
    return "wide" if unicodedata.east_asian_width(ch) in ("W", "F") else "word"


def _segments(paragraph: str):
    """Where a line may break: around runs of spaces, Latin words, and every CJK character."""
    for kind, chars in itertools.groupby(paragraph, key=_kind):
        if kind == "wide":
            yield from chars  # CJK has no spaces: a line may break between any two characters
        else:
            yield "".join(chars)


def wrap(text: str, fonts: Fonts, width: int) -> list[str]:
    """Lines of ``text`` that each fit in ``width`` pixels when drawn with ``fonts``.

    Latin breaks at spaces (a word wider than the line is cut per character), CJK between
    any two characters; newlines in the text are kept.
    """
    lines: list[str] = []
    for paragraph in _clean(text).split("\n"):
        line = ""
        for seg in _segments(paragraph):
            if fonts.width(line + seg) <= width:
                line += seg
            elif seg.isspace():  # a break: the spaces go
                if line:
                    lines.append(line.rstrip())
                line = ""
            elif (seg in _NO_LINE_START and len(line) > 1 and not line[-1].isspace()
                  and fonts.width(line[-1] + seg) <= width):
                lines.append(line[:-1].rstrip())
                line = line[-1] + seg
            else:
                if line.strip():
                    lines.append(line.rstrip())
                line = ""
                for ch in seg:  # fits whole on the new line, or is cut per character
                    if line and fonts.width(line + ch) > width:
                        lines.append(line)
                        line = ""
                    line += ch
        lines.append(line.rstrip())
    return lines


# -- the window -------------------------------------------------------------------------------------
@dataclass
class _Pane:
    """A box of wrapped text, ``offset`` lines scrolled down, ``rows`` lines high."""

    box: pygame.Rect
    lines: list[str]
    surfaces: list[pygame.Surface]
    rows: int
    offset: int = 0


class TextWindow(ComparisonWindow):
    """A pygame window showing one prompt and two responses at a time.

    Args:
        column_width: width of each response column in pixels.
        height: height of the text area (prompt and both responses) in pixels.
        font_path: a font with CJK glyphs, or ``None`` to find one (:func:`find_cjk_font`).
        font_size: text size in pixels.
        max_fps: drawing rate cap (nothing moves: 30 is plenty).

    Attributes:
        fonts: the :class:`Fonts` the prompt and responses are drawn with.
        notice: what the window says when it cannot draw Chinese, else ``""``.
        prompt_box, left_box, right_box: where the prompt and the responses are drawn;
            clicking a response picks it, the mouse wheel scrolls long text (over the
            prompt: the prompt), as do Page Up / Page Down (both responses).

    Raises:
        UserError: there is no display to open the window on.
    """

    LEGEND = ComparisonWindow.LEGEND[:4] + (("wheel", "Wheel", "scroll"),) + ComparisonWindow.LEGEND[5:]

    def __init__(self, column_width: int = 460, height: int = 480, font_path: str | None = None,
                 font_size: int = 17, max_fps: int = 30):
        super().__init__((column_width, height), max_fps)
        pygame.display.set_caption(TITLE)
        cjk = font_path or find_cjk_font()
        self.fonts = Fonts([pygame.font.match_font("dejavusans")] + ([cjk] if cjk else []), font_size)
        self.notice = "" if self.fonts.covers(CJK_PROBE) else NO_CJK_FONT
        rows_h = self.fonts.linesize
        self.prompt_box = pygame.Rect(_MARGIN, _MARGIN + _HEADER, 2 * column_width + _MARGIN,
                                      PROMPT_ROWS * rows_h + 2 * _PAD)
        top, bottom = self.prompt_box.bottom + _HEADER, self.left_box.bottom  # legend and status go below
        if bottom - top < 3 * rows_h + 2 * _PAD:
            self.close()
            raise ValueError(f"height={height} leaves no room for the responses; use at least "
                             f"{height + 3 * rows_h + 2 * _PAD - (bottom - top)}")
        self.left_box = pygame.Rect(_MARGIN, top, column_width, bottom - top)
        self.right_box = self.left_box.move(column_width + _MARGIN, 0)
        self._panes: dict[str, _Pane] = {}

    def present(self, item: TextPair) -> None:
        """Show a decoded pair (the labeling session's call)."""
        self._pair = item
        self.shown_at = None  # set when it is first drawn
        self._panes = {name: self._pane(box, text) for name, box, text in (
            ("prompt", self.prompt_box, item.prompt), ("left", self.left_box, item.left),
            ("right", self.right_box, item.right))}
        # A key pressed before this pair appeared was meant for the previous one.
        self._actions = deque(a for a in self._actions if a[0] not in ANSWER_ACTIONS)

    def lines(self, name: str, visible: bool = False) -> list[str]:
        """The wrapped lines of ``"prompt"``, ``"left"`` or ``"right"``: all, or those on screen."""
        if self._pair is None:
            return []
        pane = self._panes[name]
        return pane.lines[slice(*self._window_of(pane))] if visible else list(pane.lines)

    @staticmethod
    def _window_of(pane: _Pane) -> tuple[int, int]:
        """``(first, end)`` lines of the pane on screen, its offset clamped; a cut pane keeps
        its last row for the "more" marker."""
        total = len(pane.lines)
        shown = pane.rows if total <= pane.rows else max(1, pane.rows - 1)
        pane.offset = min(max(pane.offset, 0), max(0, total - shown))
        return pane.offset, min(total, pane.offset + shown)

    def _pane(self, box: pygame.Rect, text: str) -> _Pane:
        lines = wrap(text, self.fonts, box.width - 2 * _PAD) if text.strip() else []
        return _Pane(box, lines, [self.fonts.render(line, _TEXT) for line in lines],
                     rows=(box.height - 2 * _PAD) // self.fonts.linesize)

    # -- events --------------------------------------------------------------------------------------
    def _action(self, event) -> str | None:
        if event.type == pygame.MOUSEWHEEL:
            over_prompt = self.prompt_box.collidepoint(pygame.mouse.get_pos())
            self._scroll(("prompt",) if over_prompt else ("left", "right"), -3 * event.y)
            return None
        if event.type == pygame.KEYDOWN and event.key in (pygame.K_PAGEDOWN, pygame.K_PAGEUP):
            page = max(1, self.left_box.height // self.fonts.linesize - 2)
            self._scroll(("left", "right"), page if event.key == pygame.K_PAGEDOWN else -page)
            return None
        return super()._action(event)

    def _scroll(self, names: tuple[str, ...], lines: int) -> None:
        for name in names:
            if name in self._panes:
                self._panes[name].offset += lines  # clamped when drawn

    # -- drawing -------------------------------------------------------------------------------------
    def _draw_pair(self) -> None:
        self._draw_labels()
        for pane in self._panes.values():
            self._draw_pane(pane)

    def _draw_waiting(self) -> None:
        self._draw_labels()
        pygame.draw.rect(self.screen, _PANEL, self.prompt_box)
        super()._draw_waiting()

    def _draw_labels(self) -> None:
        y = self.prompt_box.top - _HEADER // 2
        label = self._font.render("prompt", True, _DIM)
        self.screen.blit(label, label.get_rect(midleft=(self.prompt_box.left, y)))
        if self.notice:
            notice = self._font.render(self.notice, True, _WARN)
            self.screen.blit(notice, notice.get_rect(midright=(self.prompt_box.right, y)))
        names = ("← LEFT", "RIGHT →") if self._arrows else ("LEFT", "RIGHT")
        for name, box in zip(names, (self.left_box, self.right_box)):
            self._text(name, (box.centerx, box.top - _HEADER // 2), _TEXT, center=True, font=self._big)

    def _draw_pane(self, pane: _Pane) -> None:
        pygame.draw.rect(self.screen, _PANEL, pane.box)
        x, y, step = pane.box.left + _PAD, pane.box.top + _PAD, self.fonts.linesize
        if not pane.surfaces:
            self._text("(empty)", (x, y), _DIM)
            return
        first, end = self._window_of(pane)
        for i, surf in enumerate(pane.surfaces[first:end]):
            self.screen.blit(surf, (x, y + i * step))
        if len(pane.surfaces) > pane.rows:
            below = len(pane.surfaces) - end
            marker = (f"{'▼ ' if self._arrows else ''}{below} more lines: scroll down" if below else
                      f"{'▲ ' if self._arrows else ''}{pane.offset} lines above: scroll up")
            self._text(marker, (x, y + (end - first) * step), _ACCENT)

