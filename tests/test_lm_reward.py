"""Text as clips, and the LM reward ensemble fitted by the unchanged control-side trainer."""
import math
import random
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import torch  # noqa: E402

from prefrl.clips import Clip, Label, answer_to_preference  # noqa: E402
from prefrl.errors import UserError  # noqa: E402
from prefrl.lm import load_task, sft, tiny_gpt2, train_tokenizer  # noqa: E402
from prefrl.lm.clips import clip_text, text_clip  # noqa: E402
from prefrl.lm.reward import LMRewardEnsemble, kwise_loss  # noqa: E402
from prefrl.oracles import make_oracle  # noqa: E402
from prefrl.store import PreferenceStore  # noqa: E402
from prefrl.trainer import RewardTrainer  # noqa: E402

torch.set_num_threads(1)  # the benchmark machine has 2 cores shared with other jobs

MAX_LEN = 12  # "19+19=" is 7 tokens with bos; a 2-digit answer and eos fit easily


@pytest.fixture(scope="module")
def task():
    return load_task("arithmetic", seed=0)


@pytest.fixture(scope="module")
def tokenizer(task):
    return train_tokenizer([p + r for p, r in task.demonstrations], vocab_size=300)


def assert_same_clip(a: Clip, b: Clip):
    for name in ("obs", "acts", "rewards", "states"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert getattr(a, name).dtype == getattr(b, name).dtype
    assert (a.length, a.env_id) == (b.length, b.env_id)


def test_import_prefrl_stays_light():
    code = ("import sys, prefrl, prefrl.lm, prefrl.lm.clips, prefrl.lm.reward; "
            "assert 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("prompt,response", [("12+7=", "19"), ("数到三。", "一，二，三"),
                                             ("", "only a response"), ("Say hi 🙂", "")])
def test_text_clip_layout_and_round_trip(tokenizer, prompt, response):
    clip = text_clip(tokenizer, prompt, response, gold=0.75, max_len=40, task="arithmetic")
    n = clip.length
    assert clip.obs.dtype == np.int64 and clip.obs.shape == (40,)
    assert clip.acts.dtype == np.float32 and clip.acts.shape == (40, 1)
    assert clip.rewards.dtype == np.float32 and clip.rewards.shape == (40,)
    assert clip.obs[n - 1] == tokenizer.eos_token_id and clip.obs[0] == tokenizer.bos_token_id
    assert (clip.obs[n:] == tokenizer.pad_token_id).all()
    assert clip.acts[:, 0].tolist() == [1.0 if t == n - 1 else 0.0 for t in range(40)]
    assert clip.true_return == 0.75 and clip.rewards[n - 1] == 0.75
    assert clip.env_id == "lm:arithmetic"
    assert clip_text(tokenizer, clip) == (prompt, response)
    again = Clip.from_bytes(clip.to_bytes())
    assert_same_clip(clip, again)
    assert clip_text(tokenizer, again) == (prompt, response)


def test_text_clip_edge_cases(tokenizer):
    assert text_clip(tokenizer, "1+1=", "2", gold=None, max_len=MAX_LEN).true_return == 0.0
    with pytest.raises(UserError, match="max_len"):
        text_clip(tokenizer, "1+1=", "2" * 50, gold=1.0, max_len=MAX_LEN)


def test_store_round_trip_and_teacher(tmp_path, task, tokenizer):
    def clip(response):
        return text_clip(tokenizer, "12+7=", response, task.score("12+7=", response), MAX_LEN, "arithmetic")

    right, wrong, chinese = clip("19"), clip("25"), clip("十九")
    teacher = make_oracle("perfect")
    assert teacher([right, wrong, chinese], [wrong, right, right]) == ["left", "right", "right"]

    path = tmp_path / "prefs.sqlite"
    with PreferenceStore(path, create=True, meta={"task": "arithmetic"}) as store:
        queries = store.add_queries([(right, wrong), (chinese, right)])
        for q, answer in zip(queries, teacher([right, chinese], [wrong, right])):
            store.record(Label(q.id, answer, source="oracle:perfect"))
    with PreferenceStore(path) as store:  # a fresh view decodes clips from the blobs
        lefts, rights, mu = store.preferences()
    assert mu.tolist() == [1.0, 0.0]
    for a, b in zip([right, chinese, wrong, right], lefts + rights):
        assert_same_clip(a, b)
    assert clip_text(tokenizer, lefts[1]) == ("12+7=", "十九")


def test_ensemble_shapes_and_masking(tokenizer):
    model = tiny_gpt2(tokenizer, n_layer=1, n_embd=32, n_head=2, n_positions=32)
    ens = LMRewardEnsemble(model, members=2, pad_id=tokenizer.pad_token_id)
    assert len(ens) == 2
    for member in ens.members:  # InstructGPT §3.5: members start from the given LM's body
        for (name, p), q in zip(member.body.named_parameters(), model.transformer.parameters()):
            assert torch.equal(p, q), name
    clips = [text_clip(tokenizer, f"{a}+{a}=", str(2 * a), 1.0, 20) for a in range(6)]
    obs = np.stack([c.obs for c in clips])
    acts = np.stack([c.acts for c in clips])
    with torch.no_grad():
        per_step = ens.member_rewards(0, torch.as_tensor(obs).view(2, 3, 20),
                                      torch.as_tensor(acts).view(2, 3, 20, 1))
        assert per_step.shape == (2, 3, 20)
        assert (per_step.view(6, 20)[torch.as_tensor(acts[..., 0]) == 0] == 0).all()
        # Cutting the trailing all-pad columns must not change anything: compare to full width.
        full = ens.members[0](torch.as_tensor(obs), torch.as_tensor(obs != tokenizer.pad_token_id).long())
        last = [c.length - 1 for c in clips]
        torch.testing.assert_close(per_step.view(6, 20).sum(-1), full[range(6), last])
        assert ens(torch.as_tensor(obs), torch.as_tensor(acts)).shape == (2, 6, 20)
    returns = ens.clip_returns(obs, acts)
    assert returns.shape == (2, 6) and np.isfinite(returns).all()
    assert not np.allclose(returns[0], returns[1])  # heads differ per member
    ens.set_input_stats(obs, acts)
    ens.normalize(obs, acts)
    pred = ens.predict(obs, acts)
    assert pred.shape == (6,)
    np.testing.assert_allclose(pred.mean(), 0.0, atol=1e-5)  # every member has mean 0 here


def _arith_pairs(task, tokenizer, prompts, n, rng):
    """n (correct, wrong) clip pairs in random order; wrong = off by 1..12 (near misses get partial credit)."""
    lefts, rights = [], []
    for _ in range(n):
        prompt = rng.choice(prompts)
        a, op, b = re.match(r"(\d+)([+-])(\d+)=", prompt).groups()
        answer = int(a) + int(b) if op == "+" else int(a) - int(b)
        wrong = answer + rng.choice([-1, 1]) * rng.randint(1, 12)
        wrong = wrong if wrong >= 0 else answer + 1
        pair = [str(answer), str(wrong)]
        rng.shuffle(pair)
        clips = [text_clip(tokenizer, prompt, r, task.score(prompt, r), MAX_LEN, task.name) for r in pair]
        lefts.append(clips[0])
        rights.append(clips[1])
    return lefts, rights


def _arrays(lefts, rights, teacher):
    mu = np.array([answer_to_preference(a) for a in teacher(lefts, rights)], dtype=np.float32)

    def stack(clips, field):
        return np.stack([getattr(c, field) for c in clips])

    return stack(lefts, "obs"), stack(lefts, "acts"), stack(rights, "obs"), stack(rights, "acts"), mu


def _pair_accuracy(ens, data):
    obs_l, acts_l, obs_r, acts_r, mu = data
    diff = ens.predict(obs_l, acts_l) - ens.predict(obs_r, acts_r)
    return float(((diff > 0) == (mu > 0.5)).mean())


def test_reward_trainer_fits_lm_ensemble_on_arithmetic(task, tokenizer):
    model = tiny_gpt2(tokenizer, n_layer=2, n_embd=32, n_head=2, n_positions=32, seed=0)
    sft(model, tokenizer, task.demonstrations, steps=1500, batch_size=32, lr=3e-3, seed=0)
    rng = random.Random(0)
    teacher = make_oracle("perfect")
    train = _arrays(*_arith_pairs(task, tokenizer, task.prompts, 2000, rng), teacher)
    held_out = _arrays(*_arith_pairs(task, tokenizer, task.eval_prompts, 200, rng), teacher)
    assert set(np.unique(train[-1])) == {0.0, 1.0}  # near misses score lower: no ties

    ens = LMRewardEnsemble(model, members=3, pad_id=tokenizer.pad_token_id)
    before = _pair_accuracy(ens, held_out)
    # L2 small: the trainer's penalty covers every "*weight" tensor, LayerNorm gains included.
    trainer = RewardTrainer(ens, lr=3e-4, batch_size=32, epochs=10, min_steps=50, l2=1e-6, seed=0)
    metrics = trainer.fit(*train)
    ens.normalize(np.concatenate([train[0], train[2]]), np.concatenate([train[1], train[3]]))
    after = _pair_accuracy(ens, held_out)
    print(f"held-out pair accuracy {before:.3f} -> {after:.3f}; {metrics}")
    assert after > 0.8 and after > before + 0.2
    assert not ens.training  # the trainer leaves the ensemble in eval mode


def test_kwise_loss_matches_hand_computed_pairs():
    rewards = torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]], requires_grad=True)
    ranks = torch.tensor([[0, 1, 2], [1, 0, 2]])  # prompt 2: response 1 best, then 0, then 2

    def nll(d):  # −log σ(d)
        return math.log1p(math.exp(-d))

    p1 = (nll(1.0) + nll(2.0) + nll(1.0)) / 3  # pairs (0≻1), (0≻2), (1≻2)
    p2 = (nll(1.5) + nll(0.5) + nll(2.0)) / 3  # (1≻0), (0≻2), (1≻2)
    loss = kwise_loss(rewards, ranks)
    assert loss.item() == pytest.approx((p1 + p2) / 2, rel=1e-6)

    # The same as a pairwise matrix; a NaN (uncompared) pair is left out of its prompt's mean.
    matrix = torch.full((2, 3, 3), float("nan"))
    matrix[0, 0, 1], matrix[0, 0, 2], matrix[0, 1, 2] = 1.0, 1.0, 1.0
    matrix[1, 0, 1], matrix[1, 0, 2], matrix[1, 1, 2] = 0.0, 1.0, 1.0
    assert kwise_loss(rewards, matrix).item() == pytest.approx(loss.item(), rel=1e-6)
    matrix[1, 0, 2] = matrix[1, 1, 2] = float("nan")  # prompt 2: only (1≻0) compared
    assert kwise_loss(rewards, matrix).item() == pytest.approx((p1 + nll(1.5)) / 2, rel=1e-6)
    # Equal ranks are a tie: target 0.5, minimised at equal rewards.
    tie = kwise_loss(torch.zeros(1, 2), torch.tensor([[0, 0]]))
    assert tie.item() == pytest.approx(math.log(2))

    loss.backward()
    grad = rewards.grad
    assert grad[0, 0] < 0 and grad[0, 2] > 0  # descent raises the winner, lowers the loser
    assert grad[1, 1] < 0 and grad[1, 2] > 0
    torch.testing.assert_close(grad.sum(1), torch.zeros(2))  # only differences matter
