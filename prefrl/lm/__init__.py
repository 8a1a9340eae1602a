"""The language side of prefrl: InstructGPT-style RLHF on tiny local models.

Ouyang et al. 2022 ("Training language models to follow instructions with human
feedback") fine-tune a policy on demonstrations (SFT), fit a reward model to comparisons
between its samples, then optimise the policy against that reward with PPO and a KL
penalty to the SFT model. The loop (:mod:`.loop`, ``prefrl lm train``) runs those stages
with the control side's store, selectors, oracles and Bradley–Terry trainer
(:class:`prefrl.feedback.Feedback`); what is language-specific lives here: a byte-level BPE
tokenizer (:mod:`.tokenizer`), tiny GPT-2 policies and sampling (:mod:`.model`), tasks with
gold scorers (:mod:`.tasks`), SFT (:mod:`.sft`), (prompt, response) clips (:mod:`.clips`),
the transformer reward ensemble (:mod:`.reward`) and LM PPO (:mod:`.ppo`).

Importing ``prefrl.lm`` is light; ``transformers`` and ``tokenizers`` load when a function
that needs them is first called.
"""
from prefrl.lm.model import encode_prompt, generate, load_causal_lm, tiny_gpt2
from prefrl.lm.sft import sft
from prefrl.lm.tasks import TASKS, Task, load_task
from prefrl.lm.tokenizer import train_tokenizer

__all__ = ["TASKS", "Task", "encode_prompt", "generate", "load_causal_lm", "load_task", "sft",
           "tiny_gpt2", "train_tokenizer"]
