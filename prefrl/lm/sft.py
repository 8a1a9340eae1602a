"""Supervised fine-tuning on demonstrations (InstructGPT's first stage).

Ouyang et al. 2022 (§3.5) fine-tune GPT-3 on labeler demonstrations with a next-token loss
before training a reward model or running PPO. The policy only has to learn to *produce*
the response, so the loss covers the response tokens and the closing eos (which teaches it
when to stop) and not the prompt tokens, which the policy is handed at sampling time.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from prefrl.errors import UserError
from prefrl.lm.model import context_size, encode_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def encode_demonstrations(tokenizer: "PreTrainedTokenizerBase", demonstrations: Sequence[tuple[str, str]],
                          n_ctx: int | None) -> list[tuple[list[int], int]]:
    """Each demo as ``(ids, n_prompt)``: ``ids = encode_prompt(prompt) + tokens(response) + [eos]``.

    The prompt and response are tokenized separately, exactly as at sampling time, so the
    model learns to continue the very token sequence :func:`prefrl.lm.model.generate` feeds it.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError("the tokenizer has no eos token; set tokenizer.eos_token before SFT")
    responses = tokenizer([r for _, r in demonstrations], add_special_tokens=False)["input_ids"]
    out = []
    for i, ((prompt, _), response) in enumerate(zip(demonstrations, responses)):
        prompt_ids = encode_prompt(tokenizer, prompt)
        ids = prompt_ids + list(response) + [eos]
        if n_ctx is not None and len(ids) > n_ctx:
            raise UserError(f"demonstration {i} is {len(ids)} tokens, longer than the model's "
                            f"context of {n_ctx}; shorten it or use a model with more positions")
        out.append((ids, len(prompt_ids)))
    return out


def sft(model: "PreTrainedModel", tokenizer: "PreTrainedTokenizerBase",
        demonstrations: Sequence[tuple[str, str]], steps: int, batch_size: int = 16,
        lr: float = 1e-3, seed: int = 0, warmup: float = 0.05) -> dict:
    """Fine-tune ``model`` in place on ``demonstrations`` for ``steps`` AdamW steps.

    Each step draws ``batch_size`` demos uniformly (with replacement, from a generator seeded
    by ``seed``), right-pads them to ``(B, T)`` and minimises the mean cross-entropy of the
    response+eos tokens. The learning rate warms up linearly over ``warmup * steps`` steps
    and then decays along a cosine to 10% (a standard transformer schedule; the warm-up
    keeps Adam's first updates small while its moment estimates are still noisy).

    Returns ``{"loss_first": loss of the first batch (the model before training),
    "loss_last": mean loss over the last min(10, steps) steps, "steps": steps}``.
    Same model init, data and ``seed`` → same result.
    """
    import torch
    import torch.nn.functional as F

    if steps < 1 or batch_size < 1:
        raise UserError(f"steps={steps}, batch_size={batch_size}; both must be at least 1")
    if not demonstrations:
        raise UserError("no demonstrations to fine-tune on; give the task (prompt, response) pairs")
    data = encode_demonstrations(tokenizer, demonstrations, context_size(model))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    n_warm = max(1, int(warmup * steps))

    def lr_at(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        progress = (step - n_warm) / max(1, steps - n_warm)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    losses: list[float] = []
    was_training = model.training
    model.train()
    try:
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            torch.manual_seed(seed)  # dropout, if the model has any
            for _ in range(steps):
                idx = torch.randint(len(data), (batch_size,), generator=gen).tolist()
                batch = [data[i] for i in idx]
                width = max(len(ids) for ids, _ in batch)
                input_ids = torch.full((batch_size, width), pad, dtype=torch.long)
                mask = torch.zeros((batch_size, width), dtype=torch.long)
                # target[b, t] is the token at t+1; only response and eos positions count.
                target = torch.full((batch_size, width - 1), -100, dtype=torch.long)
                for b, (ids, n_prompt) in enumerate(batch):
                    row = torch.tensor(ids)
                    input_ids[b, :len(ids)] = row
                    mask[b, :len(ids)] = 1
                    target[b, n_prompt - 1:len(ids) - 1] = row[n_prompt:]
                input_ids, mask, target = input_ids.to(device), mask.to(device), target.to(device)
                logits = model(input_ids=input_ids, attention_mask=mask).logits  # (B, T, V)
                loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                                       target.reshape(-1), ignore_index=-100)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                losses.append(loss.item())
    finally:
        model.train(was_training)
    tail = losses[-min(10, steps):]
    return {"loss_first": losses[0], "loss_last": sum(tail) / len(tail), "steps": steps}
