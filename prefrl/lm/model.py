"""Tiny GPT-2 policies: build one, load one from disk, and sample responses.

The architecture is GPT-2's (Radford et al. 2019), built from a ``GPT2Config`` so nothing is
downloaded; InstructGPT (Ouyang et al. 2022) starts every stage (SFT, reward model, PPO)
from such a pretrained-or-fine-tuned causal LM, so everything here speaks the plain
``transformers`` causal-LM interface and works with any local ``AutoModelForCausalLM``.

Prompts are encoded by :func:`encode_prompt` everywhere (SFT, sampling, and later the
reward model and PPO): ``[bos] + tokens(prompt)``, with the response's tokens appended
after. GPT-2 separates documents with ``<|endoftext|>``, so a leading bos says "a new
document starts here" and lets an empty prompt still be conditioned on.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

from prefrl.errors import UserError

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel, PreTrainedModel, PreTrainedTokenizerBase


def tiny_gpt2(tokenizer: "PreTrainedTokenizerBase", n_layer: int = 2, n_embd: int = 64,
              n_head: int = 2, n_positions: int = 128, dropout: float = 0.0,
              seed: int | None = 0) -> "GPT2LMHeadModel":
    """A freshly initialised GPT-2 sized for ``tokenizer`` (weights seeded by ``seed``).

    ``dropout`` defaults to 0: the shipped tasks are small and generated, and dropout would
    make SFT slower to converge on a CPU budget without a generalisation gap to close.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    if n_embd % n_head:
        raise UserError(f"n_embd={n_embd} is not divisible by n_head={n_head}; "
                        f"pick n_head dividing n_embd")
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd,
        n_layer=n_layer, n_head=n_head, resid_pdrop=dropout, embd_pdrop=dropout,
        attn_pdrop=dropout, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seed the init without touching global RNG
        if seed is not None:
            torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def load_causal_lm(path: str | os.PathLike) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase"]:
    """Load a causal LM and its tokenizer saved with ``save_pretrained`` under ``path``.

    Only local directories: nothing is fetched from a hub. Anything that is not a causal
    LM (missing directory, no ``config.json``, an encoder-only or encoder-decoder model,
    no tokenizer) raises :class:`UserError`.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise UserError(f"model path {path!r} is not a directory; pass a folder written by save_pretrained")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise UserError(f"{path!r} has no config.json; pass a folder written by save_pretrained")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise UserError(f"{path!r}: unreadable config.json ({type(exc).__name__}); "
                        f"re-save the model with save_pretrained") from None
    # The architectures field says which head was saved: BERT has a causal-LM class in the
    # mapping, but a saved BertModel is still an encoder and would load with a random head.
    causal = set()
    for names in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        causal.update([names] if isinstance(names, str) else names)
    architectures = getattr(config, "architectures", None) or []
    if (config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            or getattr(config, "is_encoder_decoder", False)
            or (architectures and not causal.intersection(architectures))):
        found = ", ".join(architectures) or config.model_type
        raise UserError(f"{path!r} holds {found}, not a causal language model; "
                        f"pass a decoder-only LM such as GPT-2")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise UserError(f"{path!r}: cannot load the model weights ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); re-save it with save_pretrained") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise UserError(f"{path!r} has no usable tokenizer ({type(exc).__name__}); "
                        f"save the tokenizer into the same folder with save_pretrained") from None
    return model, tokenizer


def encode_prompt(tokenizer: "PreTrainedTokenizerBase", prompt: str) -> list[int]:
    """``[bos] + tokens(prompt)`` (no bos if the tokenizer has none); see the module docstring."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    return ([bos] if bos is not None else []) + list(ids)


def context_size(model: "PreTrainedModel") -> int | None:
    """How many positions the model can attend over (``None`` if the config does not say)."""
    config = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def generate(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase", prompts: Sequence[str],
             max_new_tokens: int, temperature: float = 1.0, do_sample: bool = True,
             seed: int = 0, batch_size: int = 64) -> list[str]:
    """Sample (or, with ``do_sample=False``, greedily decode) one response per prompt.

    Returns the decoded responses only (no prompt), each cut at the first eos. Sampling is
    deterministic given ``seed`` and does not disturb the global torch RNG. Prompts are
    left-padded so every row's next token sits at the same position; GPT-2's generation
    derives position ids from the attention mask, so padding does not shift positions.
    """
    import torch

    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens={max_new_tokens}; ask for at least 1")
    if do_sample and not temperature > 0:
        raise UserError(f"temperature={temperature} with sampling; use a positive temperature "
                        f"or do_sample=False for greedy decoding")
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    n_ctx = context_size(model)
    if n_ctx is not None:
        for i, ids in enumerate(encoded):
            if len(ids) + max_new_tokens > n_ctx:
                raise UserError(
                    f"prompt {i} is {len(ids)} tokens; with max_new_tokens={max_new_tokens} that "
                    f"exceeds the model's context of {n_ctx} tokens; shorten the prompt or "
                    f"lower max_new_tokens")
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    if pad is None:
        pad = eos
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[str] = []
    try:
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]), torch.no_grad():
            torch.manual_seed(seed)
            for start in range(0, len(encoded), batch_size):
                chunk = encoded[start:start + batch_size]
                width = max(len(ids) for ids in chunk)
                input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in chunk], device=device)
                mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in chunk], device=device)
                kwargs = dict(temperature=temperature, top_k=0, top_p=1.0) if do_sample else {}
                tokens = model.generate(
                    input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                    do_sample=do_sample, pad_token_id=pad, eos_token_id=eos, **kwargs)
                for row in tokens[:, width:].tolist():
                    if eos is not None and eos in row:
                        row = row[:row.index(eos)]
                    out.append(tokenizer.decode(row, skip_special_tokens=True))
    finally:
        model.train(was_training)
    return out
