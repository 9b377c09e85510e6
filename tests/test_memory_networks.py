"""NTMCell, MemN2N and StackRNNCell: forward against NumPy references written here (one step at
a time, the papers' equations), gradcheck end to end over a few steps in float64, and the fake
device (no NumPy call on device data)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_memory_addressing import address_ref, read_ref, softmax_ref, write_ref

import minigrad as mg
import rnn
from minigrad.testing import gradcheck
from rnn.memory import MemN2N, NTMCell, StackRNNCell


def softplus(z):
    return np.log1p(np.exp(z))


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax_last(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def params(module):
    return {name: p.numpy().astype(np.float64) for name, p in module.named_parameters()}


# --- NTM ---------------------------------------------------------------------------------------


def ntm_reference(cell, x):
    """The feed-forward NTM over x (T, B, I), from the paper's equations and the addressing
    references; returns the outputs (T, B, O) and the final memory."""
    P = params(cell)
    T, B, _ = x.shape
    N, M, R, W, K = (cell.memory_slots, cell.slot_size, cell.read_heads, cell.write_heads,
                     cell.shift_width)
    A = M + 3 + K
    memory = np.broadcast_to(P["memory0"], (B, N, M)).copy()
    w = np.broadcast_to(softmax_last(P["weight_logits0"]), (B, R + W, N)).copy()
    reads = np.broadcast_to(P["reads0"], (B, R * M)).copy()
    outs = []
    for t in range(T):
        h = np.tanh(np.concatenate([x[t], reads], 1) @ P["weight_ctrl"].T + P["bias_ctrl"])
        p = h @ P["weight_heads"].T + P["bias_heads"]
        a = p[:, :(R + W) * A].reshape(B, R + W, A)
        ea = p[:, (R + W) * A:].reshape(B, W, 2 * M)
        w = address_ref(memory, w, a[..., :M], softplus(a[..., M]), sigmoid(a[..., M + 1]),
                        softmax_last(a[..., M + 2:M + 2 + K]), 1 + softplus(a[..., -1]))
        reads = read_ref(memory, w[:, :R]).reshape(B, R * M)
        memory = write_ref(memory, w[:, R:], sigmoid(ea[..., :M]), np.tanh(ea[..., M:]))
        outs.append(np.concatenate([h, reads], 1) @ P["weight_out"].T + P["bias_out"])
    return np.stack(outs), memory


def small_ntm(controller="feedforward", device="cpu", **kw):
    sizes = dict(controller_size=6, memory_slots=5, slot_size=3, read_heads=2, write_heads=2,
                 shift_width=3)
    sizes.update(kw)
    return NTMCell(4, 3, controller=controller, rng=0, dtype="float64", device=device, **sizes)


@pytest.mark.parametrize("shift_width", [3, 5])
def test_ntm_equals_numpy_reference(shift_width):
    cell = small_ntm(shift_width=shift_width)
    x = np.random.default_rng(1).standard_normal((4, 3, 4))
    out, state = rnn.unroll(cell, mg.tensor(x))
    ref_out, ref_memory = ntm_reference(cell, x)
    np.testing.assert_allclose(out.numpy(), ref_out, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(state[0].numpy(), ref_memory, rtol=1e-9, atol=1e-11)
    assert len(state) == 4  # the feed-forward controller keeps no state


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
@settings(max_examples=3)
@given(T=st.integers(1, 3), B=st.integers(1, 2), seed=st.integers(0, 99))
def test_ntm_gradcheck(controller, T, B, seed):
    cell = small_ntm(controller)
    # move the memory off its constant start so content addressing has something to compare
    cell.memory0.data = np.random.default_rng(seed).standard_normal(cell.memory0.shape)
    x = mg.tensor(np.random.default_rng(seed).standard_normal((T, B, 4)), requires_grad=True)

    def run(x, *weights):
        out, state = rnn.unroll(cell, x)
        return out, state[0]
    assert gradcheck(run, [x] + cell.parameters(), seed=seed)


def test_ntm_learned_start_gets_gradients_and_focuses_on_slot_0():
    cell = small_ntm("lstm")
    out, _ = rnn.unroll(cell, mg.tensor(np.ones((3, 2, 4))))
    out.sum().backward()
    for name in ("memory0", "weight_logits0", "reads0"):
        assert np.abs(getattr(cell, name).grad.numpy()).sum() > 0, name
    start = cell.initial_state(2)
    assert start[1].numpy()[:, :, 0].min() > 0.99 and np.allclose(start[0].numpy(), 1e-6)


# --- stack RNN ---------------------------------------------------------------------------------


def stack_reference(cell, x, discrete=False):
    """Joulin & Mikolov's equations one step at a time; returns outputs (T, B, O) and stacks."""
    P = params(cell)
    T, B, _ = x.shape
    k, d, top = cell.stacks, cell.depth, cell.read_top
    h = np.zeros((B, cell.hidden_size))
    s = -np.ones((B, k, d))
    outs, stacks = [], []
    for t in range(T):
        recurrence = h @ P["weight_hh"].T if cell.recurrent else 0.0
        h = sigmoid(x[t] @ P["weight_in"].T + recurrence
                    + s[:, :, :top].reshape(B, -1) @ P["weight_top"].T + P["bias"])
        a = softmax_last((h @ P["weight_action"].T + P["bias_action"]).reshape(B, k, 3))
        if discrete:
            a = np.eye(3)[a.argmax(-1)]
        v = sigmoid(h @ P["weight_push"].T + P["bias_push"])
        new = np.empty_like(s)
        for b in range(B):
            for j in range(k):
                for i in range(d):
                    up = v[b, j] if i == 0 else s[b, j, i - 1]
                    down = s[b, j, i + 1] if i + 1 < d else -1.0
                    new[b, j, i] = a[b, j, 0] * up + a[b, j, 1] * down + a[b, j, 2] * s[b, j, i]
        s = new
        outs.append(h @ P["weight_out"].T + P["bias_out"])
        stacks.append(s)
    return np.stack(outs), np.stack(stacks)


def small_stack(device="cpu", recurrent=True):
    return StackRNNCell(3, 3, hidden_size=5, stacks=2, depth=4, read_top=2, rng=0,
                        recurrent=recurrent, dtype="float64", device=device)


@pytest.mark.parametrize("recurrent", [True, False])
@pytest.mark.parametrize("discrete", [False, True])
def test_stack_rnn_equals_numpy_reference(discrete, recurrent):
    cell = small_stack(recurrent=recurrent)
    assert (cell.weight_hh is None) == (not recurrent)
    cell.discrete = discrete
    x = np.random.default_rng(2).standard_normal((6, 3, 3))
    out, (h, stack) = rnn.unroll(cell, mg.tensor(x))
    ref_out, ref_stacks = stack_reference(cell, x, discrete)
    np.testing.assert_allclose(out.numpy(), ref_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stack.numpy(), ref_stacks[-1], rtol=1e-10, atol=1e-12)


def test_discrete_actions_push_and_pop_whole_values():
    cell = small_stack()
    cell.discrete = True
    _, (_, stack) = rnn.unroll(cell, mg.tensor(np.random.default_rng(3).standard_normal((5, 2, 3))))
    s = stack.numpy()
    # every cell holds either EMPTY or one pushed value in (0, 1), never a blend with EMPTY
    assert np.all((s == -1.0) | ((s > 0) & (s < 1)))


@settings(max_examples=3)
@given(T=st.integers(1, 4), B=st.integers(1, 2), seed=st.integers(0, 99))
def test_stack_rnn_gradcheck(T, B, seed):
    cell = small_stack(recurrent=seed % 2 == 0)
    x = mg.tensor(np.random.default_rng(seed).standard_normal((T, B, 3)), requires_grad=True)

    def run(x, *weights):
        out, (h, stack) = rnn.unroll(cell, x)
        return out, stack
    assert gradcheck(run, [x] + cell.parameters(), seed=seed)


# --- MemN2N ------------------------------------------------------------------------------------


def memn2n_reference(net, sentences, question):
    """The paper's forward pass with loops over examples, hops and memory slots."""
    P = params(net)
    B, S, J = sentences.shape
    d, hops = net.embed_size, net.hops
    l = np.array([[(1 - j / J) - (k / d) * (1 - 2 * j / J) for k in range(1, d + 1)]
                  for j in range(1, J + 1)]) if net.position else np.ones((J, d))
    E = [P[f"embeddings.{i}"] for i in range(len(net.embeddings))]
    TE = [P[f"temporals.{i}"] for i in range(len(net.embeddings))] if net.temporal else None

    def enc(table, words):
        return sum(l[j] * table[w] for j, w in enumerate(words) if w != 0) + np.zeros(d)

    logits, attention = [], np.zeros((hops, B, S))
    for b in range(B):
        u = enc(E[0] if net.tying == "adjacent" else P["question_embedding"], question[b])
        for k in range(hops):
            ia, ic = (k, k + 1) if net.tying == "adjacent" else (0, 1)
            m, c = np.zeros((S, d)), np.zeros((S, d))
            for i in range(S):
                age = S - 1 - i  # slots counted from the newest
                m[i] = enc(E[ia], sentences[b, i]) + (TE[ia][age] if TE else 0)
                c[i] = enc(E[ic], sentences[b, i]) + (TE[ic][age] if TE else 0)
            live = [i for i in range(S) if sentences[b, i].any()]
            scores = m[live] @ u
            p = np.zeros(S)
            p[live] = scores if net.linear_start else softmax_ref(scores)
            attention[k, b] = p
            u = (u @ P["hop_map"] if net.tying == "layerwise" else u) + p @ c
        W = E[hops] if net.tying == "adjacent" else P["answer_weight"]
        logits.append(W @ u)
    return np.array(logits), attention


def story_ids(seed, B=3, S=5, J=4, V=12):
    rng = np.random.default_rng(seed)
    sentences = rng.integers(1, V, size=(B, S, J))
    sentences[:, :, -1] *= rng.random((B, S)) < 0.5   # some shorter sentences
    sentences[0, :2] = 0                               # a story of 3 sentences
    return sentences, rng.integers(0, V, size=(B, J))


@pytest.mark.parametrize("tying", ["adjacent", "layerwise"])
@pytest.mark.parametrize("encodings", [(True, True), (False, False)])
@pytest.mark.parametrize("linear_start", [False, True])
def test_memn2n_equals_numpy_reference(tying, encodings, linear_start):
    net = MemN2N(12, 6, memory_size=5, sentence_length=4, hops=3, tying=tying,
                 position=encodings[0], temporal=encodings[1], rng=0, dtype="float64")
    net.linear_start = linear_start
    sentences, question = story_ids(0)
    logits, attention = net(sentences, question)
    ref_logits, ref_attention = memn2n_reference(net, sentences, question)
    np.testing.assert_allclose(logits.numpy(), ref_logits, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(attention.numpy(), ref_attention, rtol=1e-10, atol=1e-12)
    assert np.all(attention.numpy()[:, 0, :2] == 0)  # empty slots are never read


@pytest.mark.parametrize("tying", ["adjacent", "layerwise"])
@settings(max_examples=3)
@given(hops=st.integers(1, 3), seed=st.integers(0, 99))
def test_memn2n_gradcheck(tying, hops, seed):
    net = MemN2N(12, 5, memory_size=5, sentence_length=4, hops=hops, tying=tying, rng=seed,
                 dtype="float64")
    sentences, question = story_ids(seed)
    assert gradcheck(lambda *w: net(sentences, question), net.parameters(), seed=seed)


def test_memn2n_bad_shapes():
    net = MemN2N(12, 5, memory_size=5, sentence_length=4, rng=0)
    with pytest.raises(ValueError, match="MemN2N: sentences"):
        net(np.ones((2, 4, 4), np.int64), np.ones((2, 4), np.int64))


# --- every model on the stand-in device ------------------------------------------------------


def run_ntm(device):
    cell = small_ntm("lstm", device=device)
    x = mg.tensor(np.random.default_rng(0).standard_normal((3, 2, 4)), device=device)
    out, state = rnn.unroll(cell, x)
    return cell, out, state[0]


def run_stack(device):
    cell = small_stack(device)
    x = mg.tensor(np.random.default_rng(0).standard_normal((4, 2, 3)), device=device)
    out, (h, stack) = rnn.unroll(cell, x)
    return cell, out, stack


def run_memn2n(device):
    net = MemN2N(12, 5, memory_size=5, sentence_length=4, rng=0, dtype="float64", device=device)
    sentences, question = story_ids(0)
    logits, attention = net(sentences, question)
    return net, logits, attention


@pytest.mark.parametrize("run", [run_ntm, run_stack, run_memn2n], ids=["ntm", "stack", "memn2n"])
def test_on_fake_device(run):
    """Forward and backward run with no NumPy call on device data, and equal the CPU's."""
    results = {}
    for device in ("cpu", "fake"):
        model, a, b = run(device)
        (a.sum() + b.sum()).backward()
        assert a.device == device and all(p.grad.device == device for p in model.parameters())
        results[device] = [a.numpy(), b.numpy()] + [p.grad.numpy() for p in model.parameters()]
    for x, y in zip(results["cpu"], results["fake"]):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)


def test_stack_discrete_mode_on_fake_device():
    outs = []
    for device in ("cpu", "fake"):
        cell = small_stack(device)
        cell.discrete = True
        x = mg.tensor(np.random.default_rng(0).standard_normal((4, 2, 3)), device=device)
        out, (h, stack) = rnn.unroll(cell, x)
        assert stack.device == device
        outs.append(stack.numpy())
    np.testing.assert_array_equal(outs[0], outs[1])


def test_ntm_benchmark_runs():
    """A smoke run of benchmarks/ntm.py (it times nothing here that is asserted)."""
    from benchmarks import ntm
    res = ntm.main(["--quick", "--batches", "1", "2"])
    assert res["batches"] == [1, 2] and res["speedup_per_example"] > 0


def test_docs_memory_blocks_run_alone():
    """Every ```python block of docs/memory.md runs as written, each in a namespace of its own."""
    import pathlib
    import re
    text = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "memory.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert len(blocks) >= 4
    for k, src in enumerate(blocks):
        exec(compile(src, f"docs/memory.md block {k}", "exec"), {"__name__": "docs"})


# --- the foundation's guarantees: lengths and checkpointing on nested states -------------------


def grads_of(model, loss):
    for p in model.parameters():
        p.grad = None
    loss.backward()
    return [p.grad.numpy().copy() for p in model.parameters()]


CELLS = {"ntm": lambda: small_ntm("lstm"), "ntm_feedforward": lambda: small_ntm(),
         "stack": small_stack}
IN_SIZE = {"ntm": 4, "ntm_feedforward": 4, "stack": 3}


def state_leaves(state):
    if isinstance(state, (tuple, list)):
        return [leaf for s in state for leaf in state_leaves(s)]
    return [state]


@pytest.mark.parametrize("name", sorted(CELLS))
def test_lengths_give_what_each_sequence_gives_alone(name):
    """A padded batch with lengths: each sequence's outputs, final state and weight gradients are
    those of the sequence run alone, without padding."""
    cell = CELLS[name]()
    lengths = [5, 2, 4]
    x = np.random.default_rng(4).standard_normal((5, 3, IN_SIZE[name]))
    out, state = rnn.unroll(cell, mg.tensor(x), lengths=lengths)
    weights = np.random.default_rng(5).standard_normal(out.shape)
    batch_grads = grads_of(cell, (out * mg.tensor(weights)).sum())
    alone_grads = None
    for b, n in enumerate(lengths):
        out_b, state_b = rnn.unroll(cell, mg.tensor(x[:n, b:b + 1]))
        np.testing.assert_allclose(out.numpy()[:n, b:b + 1], out_b.numpy(), rtol=1e-10)
        assert not out.numpy()[n:, b].any()
        for got, want in zip(state_leaves(state), state_leaves(state_b)):
            np.testing.assert_allclose(got.numpy()[b:b + 1], want.numpy(), rtol=1e-10)
        g = grads_of(cell, (out_b * mg.tensor(weights[:n, b:b + 1])).sum())
        alone_grads = g if alone_grads is None else [a + c for a, c in zip(alone_grads, g)]
    for got, want in zip(batch_grads, alone_grads):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("lengths", [None, [6, 3, 5]])
def test_checkpointing_gives_identical_gradients(name, lengths):
    cell = CELLS[name]()
    x = mg.tensor(np.random.default_rng(6).standard_normal((6, 3, IN_SIZE[name])))
    plain, _ = rnn.unroll(cell, x, lengths=lengths)
    want = grads_of(cell, (plain * plain).sum())
    for every in (1, 2, 4):
        out, _ = rnn.unroll(cell, x, lengths=lengths, checkpoint_every=every)
        np.testing.assert_array_equal(out.numpy(), plain.numpy())
        for got, ref in zip(grads_of(cell, (out * out).sum()), want):
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)


def test_memn2n_checkpointed_and_batched_like_alone():
    """MemN2N reads whole stories: stories of different lengths in one batch give what each gives
    alone, and `mg.checkpoint` around the model gives the same gradients."""
    net = MemN2N(12, 5, memory_size=5, sentence_length=4, rng=0, dtype="float64")
    sentences, question = story_ids(1)
    logits, attention = net(sentences, question)
    want = grads_of(net, (logits * logits).sum())
    for b in range(3):
        alone, att_b = net(sentences[b:b + 1], question[b:b + 1])
        np.testing.assert_allclose(alone.numpy(), logits.numpy()[b:b + 1], rtol=1e-12)
        np.testing.assert_allclose(att_b.numpy(), attention.numpy()[:, b:b + 1], rtol=1e-12)
    out = mg.checkpoint(lambda: net(sentences, question)[0])
    for got, ref in zip(grads_of(net, (out * out).sum()), want):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
