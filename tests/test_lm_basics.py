"""The language side's first slice: tokenizer, tiny GPT-2, tasks, SFT (all local, CPU, small)."""
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import torch  # noqa: E402

from prefrl.errors import UserError  # noqa: E402
from prefrl.lm import (TASKS, Task, generate, load_causal_lm, load_task, sft,  # noqa: E402
                       tiny_gpt2, train_tokenizer)

torch.set_num_threads(1)  # the benchmark machine has 2 cores shared with other jobs


@pytest.fixture(scope="module")
def tasks():
    return {name: load_task(name, seed=0) for name in TASKS}


@pytest.fixture(scope="module")
def tokenizer(tasks):
    texts = [p + r for t in tasks.values() for p, r in t.demonstrations]
    return train_tokenizer(texts, vocab_size=512)


def test_import_prefrl_stays_light():
    code = "import sys, prefrl, prefrl.lm, prefrl.lm.tasks; assert 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("text", ["Hello, world! 12+7=19", "你好，世界", "emoji 🙂👍🏽 ok", "  tabs\tand\nnewlines "])
def test_tokenizer_round_trips(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_tokenizer_specials_and_model_on_chinese(tokenizer):
    assert len(tokenizer) == 512
    assert tokenizer.pad_token_id is not None and tokenizer.eos_token_id is not None
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    model = tiny_gpt2(tokenizer)
    ids = torch.tensor([tokenizer("你好，世界", add_special_tokens=False)["input_ids"]])
    logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()
    with pytest.raises(UserError):
        train_tokenizer(["abc"], vocab_size=100)


WRONG = {  # a response each task's gold scorer should reject
    "arithmetic": lambda prompt: "banana",
    "length": lambda prompt: "word " * 60,
    "chinese": lambda prompt: "这是中文。" if prompt.isascii() else "This is English.",
}


@pytest.mark.parametrize("name", list(TASKS))
def test_shipped_task(tasks, name):
    task = tasks[name]
    assert isinstance(task, Task) and task.name == name
    assert task.prompts and task.eval_prompts and len(task.demonstrations) >= 1000
    assert not set(task.prompts) & set(task.eval_prompts)  # held out means held out
    assert task.max_response_tokens >= 1
    # A careless demonstrator: about 30% of demonstrations carry the flaw the scorer marks down,
    # and none without the flaw (flawed=0) do.
    flawed = sum(task.score(p, r) < 0.99 for p, r in task.demonstrations[:1000]) / 1000
    assert 0.2 < flawed < 0.4
    clean = TASKS[name](seed=0, flawed=0.0)
    assert min(clean.score(p, r) for p, r in clean.demonstrations[:500]) >= 0.99
    for prompt in task.eval_prompts:
        assert task.score(prompt, WRONG[name](prompt)) <= 0.1
    assert load_task(name, seed=0).demonstrations == task.demonstrations  # deterministic
    assert load_task(name, seed=1).demonstrations != task.demonstrations


def test_task_scorers_details(tasks):
    assert tasks["arithmetic"].score("12+7=", "19") == 1.0
    assert 0 < tasks["arithmetic"].score("12+7=", "18") < 0.5  # near miss: partial credit
    assert tasks["arithmetic"].score("12+7=", "90") == 0.0
    assert tasks["length"].score("Write 4 words about cats.", "a b c d") == 1.0
    assert tasks["length"].score("Write 4 words about cats.", "a b") == 0.5
    assert tasks["chinese"].score("天空是什么颜色？", "天空是blue") == pytest.approx(3 / 7)
    cjk = [r for _, r in tasks["chinese"].demonstrations if any("\u4e00" <= c <= "\u9fff" for c in r)]
    assert len(cjk) > 500


def test_sft_arithmetic_improves_gold_score(tasks, tokenizer):
    task = tasks["arithmetic"]
    model = tiny_gpt2(tokenizer, seed=0)

    def gold():
        out = generate(model, tokenizer, task.eval_prompts, task.max_response_tokens, do_sample=False)
        return sum(task.score(p, r) for p, r in zip(task.eval_prompts, out)) / len(out)

    before = gold()
    stats = sft(model, tokenizer, task.demonstrations, steps=1600, batch_size=16, lr=3e-3, seed=0)
    after = gold()
    # Measured on an Intel Xeon: 800 steps reached gold 0.20-0.30 (seeds 0-3), around the margin;
    # 1600 steps: loss ~6.2 -> ~0.4, held-out gold 0.00 -> 0.49-0.51 (seeds 0-1), ~12 s.
    assert stats["steps"] == 1600
    assert stats["loss_last"] < 0.3 * stats["loss_first"]
    assert after > before + 0.25


def test_sft_is_deterministic_and_generate_is_consistent(tasks, tokenizer):
    demos = tasks["chinese"].demonstrations
    results = []
    for _ in range(2):
        model = tiny_gpt2(tokenizer, seed=3)
        results.append(sft(model, tokenizer, demos, steps=5, batch_size=4, seed=7))
    assert results[0] == results[1]
    prompts = ["你好", "Count to 3.", "12+7=", ""]
    batched = generate(model, tokenizer, prompts, 8, do_sample=False)
    alone = [generate(model, tokenizer, [p], 8, do_sample=False)[0] for p in prompts]
    assert batched == alone  # left padding does not change what a prompt produces
    state = torch.random.get_rng_state()
    a = generate(model, tokenizer, prompts, 8, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert a == generate(model, tokenizer, prompts, 8, seed=1)


def test_save_load_round_trip(tmp_path, tokenizer):
    model = tiny_gpt2(tokenizer, seed=1)
    model.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    loaded, tok = load_causal_lm(tmp_path / "lm")
    assert tok.decode(tok("你好，世界 🙂", add_special_tokens=False)["input_ids"]) == "你好，世界 🙂"
    assert tok.pad_token_id == tokenizer.pad_token_id and tok.eos_token_id == tokenizer.eos_token_id
    ids = torch.tensor([tokenizer("12+7=", add_special_tokens=False)["input_ids"]])
    assert torch.allclose(model(input_ids=ids).logits, loaded(input_ids=ids).logits)
    prompts = ["12+7=", "你好"]
    assert generate(model, tokenizer, prompts, 6, seed=2) == generate(loaded, tok, prompts, 6, seed=2)


def test_non_lm_paths_are_user_errors(tmp_path):
    from transformers import BertConfig, DistilBertConfig

    with pytest.raises(UserError, match="not a directory"):
        load_causal_lm(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        load_causal_lm(tmp_path / "empty")
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
               architectures=["BertModel"]).save_pretrained(tmp_path / "bert")
    DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=64).save_pretrained(tmp_path / "distil")
    for name in ("bert", "distil"):
        with pytest.raises(UserError, match="not a causal language model") as err:
            load_causal_lm(tmp_path / name)
        assert "\n" not in str(err.value)


def test_user_task_and_bad_specs(tmp_path, monkeypatch):
    (tmp_path / "my_lm_task.py").write_text(textwrap.dedent("""
        from prefrl.lm.tasks import Task

        def make(seed=0):
            return Task("mine", ["a?"], ["b?"], [("a?", "yes")], lambda p, r: float(r == "yes"), 4)

        def no_demos():
            return Task("empty", ["a?"], ["b?"], [], None, 4)

        def no_prompts():
            return Task("empty", [], ["b?"], [("a?", "yes")], None, 4)

        def not_a_task():
            return {"name": "dict"}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    task = load_task("my_lm_task:make", seed=3)
    assert task.name == "mine" and task.score("a?", "yes") == 1.0
    bad = {"no_such_task": "unknown task", "no_such_module_zz:make": "cannot import",
           "my_lm_task:missing": "no callable", "my_lm_task:not_a_task": "not a Task",
           "my_lm_task:no_demos": "no demonstrations", "my_lm_task:no_prompts": "no prompts"}
    for spec, problem in bad.items():
        with pytest.raises(UserError, match=problem) as err:
            load_task(spec)
        assert "\n" not in str(err.value)


def test_prompt_longer_than_context(tokenizer):
    model = tiny_gpt2(tokenizer, n_positions=16)
    prompt = "Write twelve words about the long and winding road home."
    n = 1 + len(tokenizer(prompt, add_special_tokens=False)["input_ids"])  # + bos
    assert n > 16
    with pytest.raises(UserError, match=f"prompt 0 is {n} tokens.*context of 16 tokens"):
        generate(model, tokenizer, [prompt], 4)
    with pytest.raises(UserError, match="context of 16"):
        sft(model, tokenizer, [(prompt, "ok")], steps=1)
