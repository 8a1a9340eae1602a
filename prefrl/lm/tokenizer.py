"""A small byte-level BPE tokenizer trained locally (no downloads).

GPT-2 (Radford et al. 2019, §2.2) runs BPE over bytes rather than Unicode code points, so
the base vocabulary is the 256 byte values and every UTF-8 string (Chinese, emoji, ...)
round-trips exactly; merges only make common byte sequences shorter. We train the merges
on the task's own text with the ``tokenizers`` library and wrap the result as a
``transformers`` fast tokenizer so models and tokenizers save and load the usual way
(``save_pretrained`` / ``from_pretrained(local_path)``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from prefrl.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
"""End of text; also the bos token, as in GPT-2, which marks document boundaries with it."""
PAD = "<|pad|>"
"""Padding; distinct from eos so a padded batch never looks like it ended early."""


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> "PreTrainedTokenizerFast":
    """Train a byte-level BPE on ``texts`` and return it as a ``PreTrainedTokenizerFast``.

    ``vocab_size`` counts the 256 bytes, the special tokens and the learned merges, so it
    must be at least 258. Padding is on the right (for training); :func:`prefrl.lm.model.generate`
    pads prompts on the left itself.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    n_base = 256 + 2
    if vocab_size < n_base:
        raise UserError(f"vocab_size={vocab_size} is too small for byte-level BPE; "
                        f"use at least {n_base}")
    tok = Tokenizer(models.BPE())
    # add_prefix_space=False: "12+7=" and "19" tokenize the same alone as inside a batch.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen or not
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, bos_token=EOS,
        # Byte-level decoding is already exact; the default clean-up would eat spaces
        # before punctuation and break round trips.
        clean_up_tokenization_spaces=False,
    )
    wrapped.padding_side = "right"
    return wrapped
