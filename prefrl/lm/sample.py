"""``prefrl lm sample``: what a language run's policy (or its SFT model) writes for given prompts."""
from __future__ import annotations

from pathlib import Path

from prefrl import rundir
from prefrl.errors import UserError


def load_policy(run_dir, sft: bool = False):
    """``(model, tokenizer, which)``: the final policy, else the latest checkpoint's, else (or with ``sft``) the SFT model."""
    import torch

    from prefrl.lm.loop import POLICY_DIR, SFT_DIR
    from prefrl.lm.model import load_causal_lm

    run_dir = Path(run_dir)
    saved = rundir.read_run(run_dir)
    if not str(saved["config"].get("env", "")).startswith("lm:"):
        raise UserError(f"{run_dir} is not a language run: watch a control run with `prefrl play {run_dir}`")
    if not sft and (run_dir / POLICY_DIR / "config.json").exists():
        model, tokenizer = load_causal_lm(run_dir / POLICY_DIR)
        return model, tokenizer, "policy"
    if not (run_dir / SFT_DIR / "config.json").exists():
        raise UserError(f"{run_dir} has no model yet: let `prefrl lm train` finish fine-tuning first")
    model, tokenizer = load_causal_lm(run_dir / SFT_DIR)
    checkpoint = rundir.latest_checkpoint(run_dir)
    if not sft and checkpoint is not None and (checkpoint / "policy.pt").exists():
        model.load_state_dict(torch.load(checkpoint / "policy.pt"))
        return model, tokenizer, "checkpoint"
    return model, tokenizer, "sft"


def sample(run_dir, prompts: list[str], n: int = 1, greedy: bool = False, temperature: float = 1.0,
           max_new_tokens: int = 0, sft: bool = False, seed: int = 0) -> dict:
    """Responses to each prompt, with the task's gold score where it has one."""
    from prefrl.lm.model import generate
    from prefrl.lm.tasks import load_task

    if n < 1:
        raise UserError(f"--n must be a positive number (got {n})")
    if max_new_tokens < 0:
        raise UserError(f"--max-new-tokens must not be negative (got {max_new_tokens})")
    model, tokenizer, which = load_policy(run_dir, sft=sft)
    config = rundir.read_run(Path(run_dir))["config"]
    task = load_task(config["task"], seed=config.get("seed", 0))
    repeated = [p for p in prompts for _ in range(1 if greedy else n)]
    responses = generate(model, tokenizer, repeated, max_new_tokens or task.max_response_tokens,
                         temperature=temperature, do_sample=not greedy, seed=seed)
    out = []
    for i, prompt in enumerate(prompts):
        mine = responses[i * (len(repeated) // len(prompts)):(i + 1) * (len(repeated) // len(prompts))]
        entry = {"prompt": prompt, "responses": mine}
        if task.score is not None:
            entry["gold_scores"] = [task.score(prompt, r) for r in mine]
        out.append(entry)
    return {"run_dir": str(run_dir), "model": which, "task": task.name, "samples": out}
