"""(prompt, response) pairs as :class:`prefrl.clips.Clip`, so the control code runs on text.

The preference store, query selectors, B-Pref teachers and the Bradley–Terry trainer all
speak clips. A language "episode" is one prompt and one response, and InstructGPT's reward
model (Ouyang et al. 2022, §3.5) gives it a single scalar read at the sequence's last
token. Encoding that as a clip:

- ``obs``: int64 ``[max_len]`` token ids ``encode_prompt(prompt) + tokens(response) + [eos]``,
  right-padded with the pad id (the same ids SFT trains on and :func:`~prefrl.lm.model.generate`
  continues, since prompt and response are tokenized separately);
- ``acts``: float32 ``[max_len, 1]``, 1.0 at the last real token (the eos) and 0 elsewhere:
  a mask saying where the reward is read, so summing per-position rewards over T — what
  the trainer does for every clip — gives the one sequence reward;
- ``rewards``: float32 ``[max_len]``, the gold score at that same position, so
  ``clip.true_return == gold`` and every :class:`~prefrl.oracles.SimulatedTeacher` judges
  text by its gold score unchanged (a myopic teacher's discount has nothing to act on:
  there is only one rewarded step);
- ``length``: number of real tokens (prompt with bos, response, eos);
- ``states``: int64 ``[1]`` holding the prompt's token count (bos included), the only
  thing needed to split the ids back into prompt and response for showing a person;
- ``env_id``: ``"lm:<task name>"``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from prefrl.clips import Clip
from prefrl.errors import UserError
from prefrl.lm.model import encode_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ENV_PREFIX = "lm:"
"""``Clip.env_id`` of a text clip starts with this (then the task name)."""


def text_clip(tokenizer: "PreTrainedTokenizerBase", prompt: str, response: str, gold: float | None,
              max_len: int, task: str = "") -> Clip:
    """One (prompt, response) as a clip of ``max_len`` steps; see the module docstring.

    Args:
        gold: the gold score (e.g. ``task.score(prompt, response)``), or ``None`` where only
            a person can judge (stored as 0; synthetic teachers should not be used then).
        max_len: T, the padded length shared by all clips that are trained on together.
        task: the task name, recorded as ``env_id = "lm:<task>"``.

    Raises:
        UserError: the tokenizer lacks eos or pad, or the sequence is longer than ``max_len``
            (it is not truncated: cutting it would cut the eos the reward is read at).
    """
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos is None or pad is None:
        raise UserError("the tokenizer needs both an eos and a pad token to make text clips")
    prompt_ids = encode_prompt(tokenizer, prompt)
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    ids = prompt_ids + list(response_ids) + [eos]
    n = len(ids)
    if n > max_len:
        raise UserError(f"prompt + response is {n} tokens, more than max_len={max_len}; "
                        f"raise max_len or shorten the response")
    obs = np.full(max_len, pad, dtype=np.int64)
    obs[:n] = ids
    acts = np.zeros((max_len, 1), dtype=np.float32)
    acts[n - 1, 0] = 1.0  # InstructGPT §3.5: one scalar per (prompt, response), read at its end
    rewards = np.zeros(max_len, dtype=np.float32)
    rewards[n - 1] = 0.0 if gold is None else float(gold)
    return Clip(obs=obs, acts=acts, rewards=rewards, length=n,
                states=np.array([len(prompt_ids)], dtype=np.int64), env_id=ENV_PREFIX + task)


def prompt_length(clip: Clip) -> int:
    """Token count of the clip's prompt part (bos included), as stored by :func:`text_clip`."""
    if clip.states is None or np.size(clip.states) != 1:
        raise ValueError("not a text clip: states must hold the prompt length (see prefrl.lm.clips)")
    return int(np.asarray(clip.states).reshape(-1)[0])


def clip_text(tokenizer: "PreTrainedTokenizerBase", clip: Clip) -> tuple[str, str]:
    """``(prompt, response)`` of a clip made by :func:`text_clip`, for showing to a person.

    The leading bos and closing eos that :func:`text_clip` added are dropped; everything
    else is decoded as is (byte-level BPE round-trips any UTF-8 text, Chinese included,
    and prompt and response were tokenized separately so neither splits a character).
    """
    ids = [int(i) for i in clip.obs[: clip.length]]
    n_prompt = prompt_length(clip)
    prompt_ids, response_ids = ids[:n_prompt], ids[n_prompt:]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is not None and prompt_ids[:1] == [bos]:
        prompt_ids = prompt_ids[1:]
    if eos is not None and response_ids[-1:] == [eos]:
        response_ids = response_ids[:-1]
    return tokenizer.decode(prompt_ids), tokenizer.decode(response_ids)
