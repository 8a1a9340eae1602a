"""Language tasks: prompts, demonstrations for SFT, and an optional gold scorer.

InstructGPT (Ouyang et al. 2022, §3) trains in three stages that each need different data:
demonstrations (prompt, response) for supervised fine-tuning, prompts to sample comparisons
from for the reward model, and prompts for PPO. A :class:`Task` bundles them. A gold scorer
plays the part of the human labeler's judgement for synthetic oracles, the language-side
analogue of Christiano et al.'s (2017) "true reward".

The three shipped tasks are generated (no downloads), deterministic by ``seed``, and small
enough for a 2-layer GPT-2 to learn on a CPU in minutes. Their demonstrations come from a
careless demonstrator: a share ``flawed`` (30% by default) has the flaw the gold scorer
marks down. That is InstructGPT's situation (§4.1: the RLHF model is preferred to the SFT
model it started from, which imitates demonstrators): SFT copies the flaws along with the
skill, and comparisons are what tell the policy which of its habits are wanted.

- ``arithmetic``: ``"12+7="`` → ``"19"`` (a correctness task),
- ``length``: ``"Write 5 words about cats."`` → five words (format following),
- ``chinese``: answer in the language of the question (language following; Ouyang et al.
  note InstructGPT follows instructions in other languages, §4.3).
"""
from __future__ import annotations

import importlib
import inspect
import os
import random
import re
from dataclasses import dataclass
from typing import Callable

from prefrl.errors import UserError


@dataclass(frozen=True)
class Task:
    """A language task.

    ``prompts`` are for training (comparisons, PPO), ``eval_prompts`` are held out,
    ``demonstrations`` are (prompt, response) pairs for SFT, ``score(prompt, response)``
    is a gold score in [0, 1] (``None`` when only humans can judge), and
    ``max_response_tokens`` bounds generation.
    """

    name: str
    prompts: list[str]
    eval_prompts: list[str]
    demonstrations: list[tuple[str, str]]
    score: Callable[[str, str], float] | None
    max_response_tokens: int


def _split(items: list, rng: random.Random, eval_fraction: float = 0.1) -> tuple[list, list]:
    """Shuffle and split unique prompts so eval prompts are never seen in training."""
    items = list(items)
    rng.shuffle(items)
    n_eval = max(1, int(len(items) * eval_fraction))
    return items[n_eval:], items[:n_eval]


# --------------------------------------------------------------------------- arithmetic

_ARITH = re.compile(r"^\s*(\d+)\s*([+-])\s*(\d+)\s*=\s*$")
_LEADING_INT = re.compile(r"^\s*(-?\d+)")


def _arith_answer(prompt: str) -> int | None:
    m = _ARITH.match(prompt)
    if m is None:
        return None
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    return a + b if op == "+" else a - b


def arithmetic_score(prompt: str, response: str) -> float:
    """1.0 for the right leading number; a near miss earns at most 0.45.

    Partial credit (``0.5 * max(0, 1 - |error| / 10)``) gives a reward model and PPO a
    gradient toward the answer before exact answers are common; an exact answer is always
    worth more than twice any near miss. No leading integer (or a malformed prompt) → 0.
    """
    answer = _arith_answer(prompt)
    m = _LEADING_INT.match(response)
    if answer is None or m is None:
        return 0.0
    error = abs(int(m.group(1)) - answer)
    if error == 0:
        return 1.0
    return 0.5 * max(0.0, 1.0 - error / 10.0)


def arithmetic(seed: int = 0, n_demos: int = 3000, max_operand: int = 19, flawed: float = 0.3) -> Task:
    """``"a+b="`` / ``"a-b="`` with ``0 <= b <= a <= max_operand`` (answers never negative).

    A ``flawed`` share of demonstrations wraps the answer in words ("The answer is 19."),
    which the scorer, wanting the number first, gives 0.
    """
    rng = random.Random(seed)
    problems = [f"{a}{op}{b}=" for a in range(max_operand + 1) for b in range(a + 1)
                for op in "+-"]
    problems += [f"{b}+{a}=" for a in range(max_operand + 1) for b in range(a)]
    train, held_out = _split(problems, rng)
    demos = []
    for p in (rng.choice(train) for _ in range(n_demos)):
        answer = str(_arith_answer(p))
        demos.append((p, f"The answer is {answer}." if rng.random() < flawed else answer))
    return Task("arithmetic", train, held_out, demos, arithmetic_score, max_response_tokens=8)


# --------------------------------------------------------------------------- length

_TOPICS: dict[str, list[str]] = {
    "cats": "soft purr whiskers nap sun paws milk tail quiet curious fur play".split(),
    "rain": "wet grey clouds drops puddles cool storm umbrella falls soft sky drip".split(),
    "the sea": "waves salt blue tide shore deep fish sand wind boats foam vast".split(),
    "music": "songs rhythm notes melody drums loud sweet chords dance voice beat calm".split(),
    "trees": "green leaves roots tall bark shade branches forest old birds grow oak".split(),
    "coffee": "hot dark bitter cup morning beans strong warm aroma milk brew fresh".split(),
    "winter": "cold snow ice frost white long nights fire scarf quiet bare wind".split(),
    "cities": "busy streets lights towers noise crowds cars night shops trains loud vast".split(),
}
_LENGTH = re.compile(r"^Write (\d+) words? about (.+)\.$")


def length_score(prompt: str, response: str) -> float:
    """``max(0, 1 - |words - N| / N)`` where words are whitespace-separated tokens."""
    m = _LENGTH.match(prompt.strip())
    if m is None:
        return 0.0
    n = int(m.group(1))
    words = len(response.split())
    return max(0.0, 1.0 - abs(words - n) / n)


def length(seed: int = 0, n_demos: int = 3000, min_words: int = 2, max_words: int = 12,
           flawed: float = 0.3) -> Task:
    """``"Write N words about X."`` answered with N words drawn from X's vocabulary.

    A ``flawed`` share of demonstrations miscounts by one to three words either way.
    """
    rng = random.Random(seed)
    prompts = [f"Write {n} words about {topic}." for topic in _TOPICS
               for n in range(min_words, max_words + 1)]
    train, held_out = _split(prompts, rng)
    demos = []
    for _ in range(n_demos):
        prompt = rng.choice(train)
        n, topic = _LENGTH.match(prompt).groups()
        n = int(n)
        if rng.random() < flawed:
            n = max(1, n + rng.choice([-3, -2, -1, 1, 2, 3]))
        demos.append((prompt, " ".join(rng.choice(_TOPICS[topic]) for _ in range(n))))
    # Each word is a token or two under a small BPE; leave room for the longest answer.
    return Task("length", train, held_out, demos, length_score, max_response_tokens=3 * max_words)


# --------------------------------------------------------------------------- chinese

_NUMBERS = [("one", "一"), ("two", "二"), ("three", "三"), ("four", "四"), ("five", "五"),
            ("six", "六"), ("seven", "七"), ("eight", "八"), ("nine", "九"), ("ten", "十")]
_COLORS = [("red", "红色"), ("blue", "蓝色"), ("green", "绿色"), ("yellow", "黄色"),
           ("white", "白色"), ("black", "黑色")]
_THINGS = [("the sky", "天空", "blue", "蓝色"), ("grass", "草", "green", "绿色"),
           ("snow", "雪", "white", "白色"), ("the sun", "太阳", "yellow", "黄色"),
           ("blood", "血", "red", "红色"), ("the night", "夜晚", "black", "黑色")]
_NAMES = [("Ming", "小明"), ("Hong", "小红"), ("Li", "李老师"), ("Wang", "王先生"),
          ("Mom", "妈妈"), ("Dad", "爸爸"), ("friend", "朋友")]


def _chinese_pairs() -> list[tuple[str, str]]:
    """Every (prompt, response) the task can ask, in both languages."""
    pairs = []
    for en, zh in _NAMES:
        pairs.append((f"Say hello to {en}.", f"Hello, {en}! How are you?"))
        pairs.append((f"向{zh}问好。", f"{zh}，你好！你好吗？"))
    for n in range(1, len(_NUMBERS) + 1):
        pairs.append((f"Count to {n}.", " ".join(e for e, _ in _NUMBERS[:n])))
        pairs.append((f"数到{_NUMBERS[n - 1][1]}。", "，".join(z for _, z in _NUMBERS[:n])))
    for en, zh, color_en, color_zh in _THINGS:
        pairs.append((f"What color is {en}?", f"{en.capitalize()} is {color_en}."))
        pairs.append((f"{zh}是什么颜色？", f"{zh}是{color_zh}。"))
    for en, zh in _COLORS:
        pairs.append((f"How do you say {en}?", f"You say {en}."))
        pairs.append((f"怎么说{zh}？", f"我们说{zh}。"))
    return pairs


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"  # CJK Unified Ideographs


def _is_latin(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def chinese_score(prompt: str, response: str) -> float:
    """Fraction of the response's letters in the prompt's script (CJK vs Latin).

    The prompt is Chinese if it has any CJK Unified Ideograph. Only CJK ideographs and
    Latin letters count: digits, spaces and punctuation are shared by both. No letters → 0.
    """
    cjk = sum(map(_is_cjk, response))
    latin = sum(map(_is_latin, response))
    if cjk + latin == 0:
        return 0.0
    right = cjk if any(map(_is_cjk, prompt)) else latin
    return right / (cjk + latin)


def chinese(seed: int = 0, n_demos: int = 3000, flawed: float = 0.3) -> Task:
    """Answer Chinese questions in Chinese and English ones in English.

    A ``flawed`` share of demonstrations answers in the other language (the same answer,
    translated).
    """
    rng = random.Random(seed)
    pairs = _chinese_pairs()
    other = {p: pairs[i ^ 1][1] for i, (p, _) in enumerate(pairs)}  # English and Chinese alternate
    train, held_out = _split(pairs, rng, eval_fraction=0.15)
    demos = []
    for prompt, response in (rng.choice(train) for _ in range(n_demos)):
        demos.append((prompt, other[prompt] if rng.random() < flawed else response))
    return Task("chinese", [p for p, _ in train], [p for p, _ in held_out], demos,
                chinese_score, max_response_tokens=32)


# --------------------------------------------------------------------------- loading

TASKS: dict[str, Callable[..., Task]] = {"arithmetic": arithmetic, "length": length,
                                         "chinese": chinese}
"""Shipped task builders, each ``builder(seed) -> Task``."""


def load_task(spec: str, seed: int = 0) -> Task:
    """A shipped task by name, ``"module:callable"`` returning a :class:`Task`, or a JSON Lines file.

    The callable gets ``seed=seed`` if it takes a ``seed`` argument, else no arguments.
    A file is read by :func:`task_from_file`.
    """
    if spec in TASKS:
        return _check(TASKS[spec](seed=seed), spec)
    if spec.endswith((".jsonl", ".json")) or os.path.isfile(spec):
        return _check(task_from_file(spec, seed=seed), spec)
    if ":" not in spec:
        raise UserError(f"unknown task {spec!r}; use one of {', '.join(TASKS)} or 'module:callable'")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module itself failing to run
        raise UserError(f"task {spec!r}: cannot import {module_name!r} ({type(exc).__name__}: "
                        f"{exc}); put it on PYTHONPATH or fix the module") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UserError(f"task {spec!r}: {module_name} has no callable {attr!r}; "
                        f"name a function that returns a prefrl.lm.tasks.Task")
    try:
        takes_seed = "seed" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_seed = False
    task = fn(seed=seed) if takes_seed else fn()
    return _check(task, spec)


def task_from_file(path: str, seed: int = 0, max_response_tokens: int = 64) -> Task:
    """A task from a UTF-8 JSON Lines file of demonstrations, one ``{"prompt": ..., "response": ...}`` per line.

    There is no gold scorer, so only people can judge (``--oracle human``); a tenth of the
    distinct prompts (at least one) is held out for evaluation, as for the shipped tasks.
    """
    import json

    name = os.path.splitext(os.path.basename(path))[0]
    try:
        raw = open(path, "rb").read()
    except OSError as exc:
        raise UserError(f"task file {path!r} cannot be read ({exc.strerror}); check the path") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"task file {path!r} is not UTF-8 (byte {exc.start}); save it as UTF-8") from None
    demos = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            demo = (row["prompt"], row["response"])
            if not all(isinstance(x, str) for x in demo):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise UserError(f"task file {path!r} line {number}: expected {{\"prompt\": \"...\", \"response\": \"...\"}}; "
                            f"fix that line") from None
        demos.append(demo)
    if not demos:
        raise UserError(f"task file {path!r} holds no demonstrations; add lines of "
                        f"{{\"prompt\": \"...\", \"response\": \"...\"}}")
    prompts = sorted({p for p, _ in demos})
    train, held_out = _split(prompts, random.Random(seed)) if len(prompts) > 1 else (prompts, prompts)
    return Task(name, train, held_out, demos, None, max_response_tokens=max_response_tokens)


def _check(task: object, spec: str) -> Task:
    """Reject tasks the training stages cannot use, with a one-line reason."""
    if not isinstance(task, Task):
        raise UserError(f"task {spec!r} returned {type(task).__name__}, not a Task; "
                        f"return prefrl.lm.tasks.Task(...)")
    for field in ("prompts", "eval_prompts", "demonstrations"):
        if not getattr(task, field):
            raise UserError(f"task {spec!r} has no {field}; give it at least one")
    if not all(isinstance(d, tuple) and len(d) == 2 and all(isinstance(s, str) for s in d)
               for d in task.demonstrations):
        raise UserError(f"task {spec!r}: demonstrations must be (prompt, response) string pairs")
    if task.max_response_tokens < 1:
        raise UserError(f"task {spec!r}: max_response_tokens is {task.max_response_tokens}; "
                        f"make it at least 1")
    return task
