"""Labeling text runs: the text window (SDL dummy driver, posted events) and the terminal."""
from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

pygame = pytest.importorskip("pygame")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from prefrl.clips import Query  # noqa: E402
from prefrl.errors import UserError  # noqa: E402
from prefrl.lm.clips import text_clip  # noqa: E402
from prefrl.lm.tokenizer import train_tokenizer  # noqa: E402
from prefrl.store import PreferenceStore  # noqa: E402
from prefrl.ui import labeler as lab  # noqa: E402
from ui_driver import claims, drive, key, on_screen, quit_session  # noqa: E402
from prefrl.ui import terminal  # noqa: E402
from prefrl.ui.text_window import (NO_CJK_FONT, Fonts, TextPair, TextWindow, find_cjk_font,  # noqa: E402
                                   wrap)

LONG_ZH = "春天来了，花开了，小鸟在树上唱歌。" * 12
LONG_EN = "The quick brown fox jumps over the lazy dog while the cat watches quietly. " * 10
PAIRS = [  # (prompt, left response, right response); query ids follow this order
    ("What is a cat?", "A cat is a small animal that purrs.", "Cats."),
    ("猫是什么？请用中文回答。", "猫是一种小动物，喜欢睡觉。", "A cat is an animal."),
    ("Say hello in Chinese.", "你好！", ""),
    ("写一首关于春天的短诗。", LONG_ZH, LONG_EN),
    ("Count to three.", "one two three", "1, 2, 3"),
]
MAX_LEN = 1024


@pytest.fixture(scope="module")
def tokenizer():
    texts = [p + " " + r for pair in PAIRS for p in pair[:1] for r in pair[1:]]
    return train_tokenizer(texts * 4, vocab_size=320)


@pytest.fixture
def make_run(tmp_path, tokenizer):
    """``make_run(pairs=PAIRS, tokenizer=True)``: an LM run dir (``lm:chinese``) with one query a pair."""
    def make(pairs=PAIRS, with_tokenizer=True, name="run"):
        run_dir = tmp_path / name
        run_dir.mkdir()
        if with_tokenizer:
            tokenizer.save_pretrained(run_dir / "sft")
        meta = {"env_id": "lm:chinese", "label_budget": "50", "trainer_status": "training",
                "trainer_heartbeat": str(time.time())}
        with PreferenceStore(run_dir / "prefs.sqlite", create=True, meta=meta) as store:
            clips = [(text_clip(tokenizer, p, a, None, MAX_LEN, "chinese"),
                      text_clip(tokenizer, p, b, None, MAX_LEN, "chinese")) for p, a, b in pairs]
            if clips:
                store.add_queries(clips)
        return str(run_dir)
    return make


def labels_of(run_dir) -> dict:
    with PreferenceStore(os.path.join(run_dir, "prefs.sqlite")) as store:
        return {label.query_id: label for label in store.labels()}


def answer(session, k) -> int:
    query_id, before = on_screen(session), session.answers + session.undone
    key(k)
    drive(session, lambda: session.answers + session.undone != before)
    return query_id


def bitmap(fonts: Fonts, text: str) -> bytes:
    return pygame.image.tobytes(fonts.render(text, (255, 255, 255)), "RGBA")


# -- the window ----------------------------------------------------------------------------------------
def test_each_key_records_its_answer_on_decoded_text(make_run, session_of):
    run_dir = make_run()
    session = session_of(run_dir, labeler="alice")
    assert isinstance(session.window, TextWindow)
    keys = {pygame.K_LEFT: "left", pygame.K_RIGHT: "right", pygame.K_UP: "equal", pygame.K_DOWN: "incomparable"}
    asked = []
    for k, expected in keys.items():
        query_id = on_screen(session)
        prompt, left, right = PAIRS[query_id - 1]
        assert (session.current.prompt, session.current.left, session.current.right) == (prompt, left, right)
        assert answer(session, k) == query_id
        asked.append((query_id, expected))
    labels = labels_of(run_dir)
    assert sorted(labels) == [1, 2, 3, 4]
    for query_id, expected in asked:
        label = labels[query_id]
        assert (label.answer, label.source, label.labeler) == (expected, "human", "alice")
        assert label.response_time > 0
    session.step()  # refreshes the status line
    status = session.window.status
    assert (status.answers, status.budget, status.waiting, status.trainer) == (4, 50, 1, "training")


def test_click_picks_a_column(make_run, session_of):
    run_dir = make_run()
    session = session_of(run_dir, labeler="bob")
    for box, expected in ((session.window.right_box, "right"), (session.window.left_box, "left")):
        query_id = on_screen(session)
        pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=box.center, button=1))
        drive(session, lambda: session.current is None or session.current.query.id != query_id)
        assert labels_of(run_dir)[query_id].answer == expected
    query_id = on_screen(session)  # the prompt is not a column: clicking it answers nothing
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=session.window.prompt_box.center, button=1))
    key(pygame.K_SPACE)  # nothing to replay: harmless
    for _ in range(5):
        session.step()
    assert session.current.query.id == query_id and query_id not in labels_of(run_dir)


def test_undo_shows_the_query_again(make_run, session_of):
    run_dir = make_run()
    session = session_of(run_dir, labeler="carol")
    first = answer(session, pygame.K_LEFT)
    second = on_screen(session)
    key(pygame.K_BACKSPACE)
    drive(session, lambda: session.undone == 1)
    assert on_screen(session) == first
    assert labels_of(run_dir) == {}
    assert answer(session, pygame.K_RIGHT) == first
    assert on_screen(session) == second
    assert {q: lb.answer for q, lb in labels_of(run_dir).items()} == {first: "right"}
    assert session.summary()["answers"] == 1 and session.summary()["undone"] == 1


def test_quit_mid_query_keeps_answers_and_releases_claims(make_run):
    run_dir = make_run()
    session = lab.LabelingSession(run_dir, labeler="dave")
    try:
        answered = answer(session, pygame.K_UP)
        on_screen(session)
        assert claims(run_dir) == 2  # the pair on screen and the one decoded ahead
        quit_session(session)
    finally:
        result = session.close()
    assert result["answers"] == 1 and claims(run_dir) == 0
    assert list(labels_of(run_dir)) == [answered]


def test_no_query_waiting_does_not_block(make_run, session_of, tokenizer):
    run_dir = make_run(pairs=[])
    session = session_of(run_dir)
    for _ in range(3):
        t = time.monotonic()
        assert session.step()
        assert time.monotonic() - t < 0.5
    assert not session.window.showing_pair and "no query waiting" in session.window.message
    with PreferenceStore(os.path.join(run_dir, "prefs.sqlite")) as store:
        clips = [text_clip(tokenizer, "你好", r, None, MAX_LEN, "chinese") for r in ("好", "hi")]
        (query,) = store.add_queries([tuple(clips)])
    drive(session, lambda: session.current is not None, timeout=5)
    assert session.current.query.id == query.id and session.current.left == "好"


def test_window_and_terminal_sessions_share_a_run(make_run, session_of):
    run_dir = make_run()
    session = session_of(run_dir, labeler="window")
    answer(session, pygame.K_LEFT)
    on_screen(session)  # holds this query and one decoded ahead
    result = terminal.run(run_dir, labeler="term", stdin=io.StringIO("2\n2\n"), stdout=io.StringIO())
    assert result["answers"] == 2
    answer(session, pygame.K_LEFT)
    answer(session, pygame.K_LEFT)
    with sqlite3.connect(os.path.join(run_dir, "prefs.sqlite")) as db:
        rows = db.execute("SELECT labeler, status FROM answers").fetchall()
    assert sorted(rows) == [("term", "current")] * 2 + [("window", "current")] * 3  # no query answered twice


# -- drawing text ------------------------------------------------------------------------------------
def test_chinese_is_drawn_with_glyphs():
    if find_cjk_font() is None and not os.environ.get("CI"):
        pytest.skip("no CJK font on this machine (apt install fonts-droid-fallback)")
    window = TextWindow()
    try:
        assert window.notice == ""
        assert bitmap(window.fonts, "你") != bitmap(window.fonts, "好")
        assert window.fonts.covers("Hello, 你好，世界！ 123")
        default = Fonts([None], 17)  # pygame's own font: one box for every Chinese character
        assert bitmap(default, "你") == bitmap(default, "好") and not default.covers("你")
        window.present(TextPair(Query(1, 1, 2), "猫是什么？", "猫是一种小动物。", "A cat."))
        window.tick()
        assert window.lines("left") == ["猫是一种小动物。"]
    finally:
        window.close()


def test_without_a_cjk_font_the_window_says_what_to_install():
    latin_only = os.path.join(os.path.dirname(pygame.__file__), "freesansbold.ttf")
    window = TextWindow(font_path=latin_only)
    try:
        assert window.notice == NO_CJK_FONT and "apt install fonts-noto-cjk" in NO_CJK_FONT
        window.tick()
    finally:
        window.close()


def test_wrapped_lines_fit_their_columns_and_long_text_scrolls():
    window = TextWindow(column_width=300, height=360)
    try:
        word = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 2  # wider than a column
        texts = {"prompt": LONG_EN, "left": LONG_ZH + "\n\n" + word, "right": LONG_EN}
        window.present(TextPair(Query(1, 1, 2), **texts))
        window.tick()
        for name, box in (("prompt", window.prompt_box), ("left", window.left_box), ("right", window.right_box)):
            lines = window.lines(name)
            assert len(lines) > 3
            for line in lines:
                assert window.fonts.render(line, (0, 0, 0)).get_width() <= box.width
            text = texts[name]
            assert "".join(lines).replace(" ", "") == text.replace(" ", "").replace("\n", "")
        left = window.lines("left")
        assert not any(line.startswith(("，", "。")) for line in left)  # CJK punctuation never starts a line
        assert word[:10] in "".join(left) and all(" " not in line for line in left[-3:])
        english = window.lines("right")
        words = set(LONG_EN.split())
        assert all(set(line.split()) <= words for line in english)  # Latin breaks between words
        # The responses are longer than their boxes: Page Down and the wheel scroll them.
        first = window.lines("right", visible=True)
        assert first[0] == english[0] and len(first) < len(english)
        key(pygame.K_PAGEDOWN)
        window.tick()
        assert window.lines("right", visible=True)[0] != english[0]
        for _ in range(30):
            pygame.event.post(pygame.event.Event(pygame.MOUSEWHEEL, x=0, y=-1, flipped=False))
        window.tick()
        assert window.lines("right", visible=True)[-1] == english[-1]  # stops at the end
        assert window.tick() is None  # scrolling answers nothing
    finally:
        window.close()


def test_wrap_breaks_chinese_between_characters():
    fonts = Fonts([None], 17)
    width = fonts.width("MMMMM")
    lines = wrap("一二三四五六七八九十" * 3 + "\nshort", fonts, width)
    assert len(lines) > 3 and lines[-1] == "short"
    assert all(fonts.width(line) <= width for line in lines)
    assert "".join(lines[:-1]) == "一二三四五六七八九十" * 3


# -- the terminal ---------------------------------------------------------------------------------------
def test_terminal_answers_from_piped_lines(make_run):
    run_dir = make_run()
    out = io.StringIO()
    lines = "1\nbanana\nR\n u\n=\n?\n"  # then end of input: quit
    result = terminal.run(run_dir, labeler="tess", stdin=io.StringIO(lines), stdout=out)
    labels = labels_of(run_dir)
    # 1 → query 1; the bad line asks again; r → 2; u undoes 2, shown again; = → 2; ? → 3.
    assert {q: lb.answer for q, lb in labels.items()} == {1: "left", 2: "equal", 3: "incomparable"}
    assert all(lb.source == "human" and lb.labeler == "tess" and lb.response_time >= 0 for lb in labels.values())
    assert result["answers"] == 3 and result["undone"] == 1
    text = out.getvalue()
    assert "'banana' is not an answer: type 1 or l" in text
    assert "猫是一种小动物，喜欢睡觉。" in text and "── 1 (left)" in text and "── 2 (right)" in text
    assert "(empty)" in text  # query 3's right response is empty
    assert claims(run_dir) == 0  # query 4, shown when the input ended, is free again


def test_terminal_waits_for_queries_and_quits(make_run):
    run_dir = make_run(pairs=[])
    out = io.StringIO()
    result = terminal.run(run_dir, stdin=io.StringIO("u\nq\n"), stdout=out)
    assert result == {"answers": 0, "undone": 0, "mean_seconds_per_answer": None}
    assert out.getvalue().count("no query waiting") == 1 and "nothing to undo" in out.getvalue()


def test_terminal_as_a_subprocess(make_run):
    run_dir = make_run()
    proc = subprocess.run([sys.executable, "-m", "prefrl.ui.terminal", run_dir, "--labeler", "pipe"],
                          input="l\n2\nq\n", capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["answers"] == 2
    assert {q: lb.answer for q, lb in labels_of(run_dir).items()} == {1: "left", 2: "right"}
    assert "猫是什么？" in proc.stdout and claims(run_dir) == 0


def test_terminal_max_answers_and_control_runs(make_run, tmp_path):
    run_dir = make_run()
    result = terminal.run(run_dir, max_answers=1, stdin=io.StringIO("2\n1\n"), stdout=io.StringIO())
    assert result["answers"] == 1 and len(labels_of(run_dir)) == 1 and claims(run_dir) == 0
    control = tmp_path / "control"
    control.mkdir()
    PreferenceStore(control / "prefs.sqlite", create=True, meta={"env_id": "Hopper-v5"}).close()
    with pytest.raises(UserError, match="text runs only: use the window"):
        terminal.run(control, stdin=io.StringIO(""), stdout=io.StringIO())


def test_missing_tokenizer_is_a_user_error(make_run):
    run_dir = make_run(with_tokenizer=False)
    with pytest.raises(UserError, match=r"sft holds no tokenizer"):
        lab.run(run_dir)
    with pytest.raises(UserError, match=r"sft holds no tokenizer"):
        terminal.run(run_dir, stdin=io.StringIO("1\n"), stdout=io.StringIO())
    assert claims(run_dir) == 0 and labels_of(run_dir) == {}
