"""The attention decoder and the encoder-decoder: the decoder against NumPy maths written here,
gradcheck (float64, drawn sizes and lengths), a padded batch equal to each example alone
(outputs, weights, every gradient), checkpointed == plain (the encoder's outputs getting their
gradient through the context), the step function equal to teacher forcing, the fake device."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.testing import gradcheck

F64 = "float64"


# --- independent NumPy reference: GRU inner cell, additive attention, Luong's output layer -------

def sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def np_gru(p, x, h):
    H = h.shape[1]
    gi = x @ p["weight_ih"].T + p["bias_ih"]
    w, b = p["weight_hh"], p["bias_hh"]
    r = sig(gi[:, :H] + h @ w[:H].T + b[:H])
    z = sig(gi[:, H:2 * H] + h @ w[H:2 * H].T + b[H:2 * H])
    n = np.tanh(gi[:, 2 * H:] + (r * h) @ w[2 * H:].T + b[2 * H:])
    return (1 - z) * n + z * h


def np_decoder(p, xs, h, enc, src_lengths, tgt_lengths, feeding):
    """xs (T, B, I), enc (S, B, D): outputs (T, B, H_o) and weights (T, B, S), zero past ends,
    and each sequence's final (h, o, a): at its own last step."""
    T, B = xs.shape[:2]
    S = enc.shape[0]
    keys = enc.transpose(1, 0, 2)
    mask = np.arange(S)[None] < np.asarray(src_lengths)[:, None]
    feed = np.zeros((B, p["output_proj.weight"].shape[0]))
    outs, weights = np.zeros((T, B, feed.shape[1])), np.zeros((T, B, S))
    last_a = np.zeros((B, S))
    for t in range(T):
        x = np.concatenate([xs[t], feed], axis=1) if feeding else xs[t]
        h_new = np_gru({k[5:]: v for k, v in p.items() if k.startswith("cell.")}, x, h)
        e = np.tanh(keys @ p["attention.key_proj.weight"].T
                    + (h_new @ p["attention.query_proj.weight"].T
                       + p["attention.query_proj.bias"])[:, None]) @ p["attention.v"]
        e = np.where(mask, e, -np.inf)
        a = np.exp(e - e.max(axis=1, keepdims=True))
        a /= a.sum(axis=1, keepdims=True)
        c = np.einsum("bs,bsd->bd", a, keys)
        o = np.tanh(np.concatenate([c, h_new], axis=1) @ p["output_proj.weight"].T
                    + p["output_proj.bias"])
        live = (t < np.asarray(tgt_lengths))[:, None]
        outs[t], weights[t] = np.where(live, o, 0), np.where(live, a, 0)
        h, feed = np.where(live, h_new, h), np.where(live, o, feed)
        last_a = np.where(live, a, last_a)
    return outs, weights, (h, feed, last_a)


def make_decoder(I, H, D, feeding, seed, attention="additive", inner="gru"):
    g = np.random.default_rng(seed)
    n_in = I + (H if feeding else 0)
    cell = (rnn.GRUCell(n_in, H, rng=g, dtype=F64) if inner == "gru"
            else rnn.LSTMCell(n_in, H, rng=g, dtype=F64) if inner == "lstm"
            else rnn.StepStack([rnn.LSTMCell(n_in, H, rng=g, dtype=F64),    # a deep decoder
                                rnn.GRUCell(H, H, rng=g, dtype=F64)]))
    att = (rnn.AdditiveAttention(H, D, 4, rng=g, dtype=F64) if attention == "additive" else
           rnn.LocationAwareAttention(H, D, 4, filters=2, width=3, rng=g, dtype=F64))
    return rnn.AttentionDecoderCell(cell, att, input_feeding=feeding, rng=g, dtype=F64)


@st.composite
def decoder_cases(draw):
    return dict(B=draw(st.integers(1, 3)), S=draw(st.integers(1, 4)), T=draw(st.integers(1, 4)),
                I=draw(st.integers(1, 3)), H=draw(st.integers(1, 3)), D=draw(st.integers(1, 3)),
                feeding=draw(st.booleans()), seed=draw(st.integers(0, 2**16)),
                data=draw(st.data()))


def draw_arrays(c):
    rng = np.random.default_rng(c["seed"])
    src_lengths = c["data"].draw(st.lists(st.integers(1, c["S"]), min_size=c["B"],
                                          max_size=c["B"]))
    tgt_lengths = c["data"].draw(st.lists(st.integers(1, c["T"]), min_size=c["B"],
                                          max_size=c["B"]))
    xs = rng.standard_normal((c["T"], c["B"], c["I"]))
    enc = rng.standard_normal((c["S"], c["B"], c["D"]))
    h0 = rng.standard_normal((c["B"], c["H"])) * 0.5
    return xs, enc, h0, np.array(src_lengths), np.array(tgt_lengths)


def decoder_run(dec, xs, enc, h0, src_lengths, tgt_lengths, **kw):
    ctx = dec.context(enc, src_lengths)
    _, feed, a = dec.initial_state(xs.shape[1], ctx)
    return rnn.run_decoder(dec, xs, (h0, feed, a), ctx, tgt_lengths, **kw)


@settings(max_examples=12)
@given(c=decoder_cases())
def test_decoder_equals_numpy(c):
    xs, enc, h0, src_lengths, tgt_lengths = draw_arrays(c)
    dec = make_decoder(c["I"], c["H"], c["D"], c["feeding"], c["seed"])
    out, final, weights = decoder_run(dec, mg.tensor(xs), mg.tensor(enc), mg.tensor(h0),
                                      src_lengths, tgt_lengths)
    p = {n: v.numpy() for n, v in dec.named_parameters()}
    ref_out, ref_w, ref_final = np_decoder(p, xs, h0, enc, src_lengths, tgt_lengths,
                                           c["feeding"])
    for got, want in zip(final, ref_final):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out.numpy(), ref_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weights.numpy(), ref_w, rtol=1e-10, atol=1e-12)


@settings(max_examples=8)
@given(c=decoder_cases(), attention=st.sampled_from(["additive", "location"]),
       inner=st.sampled_from(["gru", "deep"]))
def test_decoder_gradcheck(c, attention, inner):
    xs, enc, h0, src_lengths, tgt_lengths = draw_arrays(c)
    dec = make_decoder(c["I"], c["H"], c["D"], c["feeding"], c["seed"], attention, inner)
    B = c["B"]

    def f(xs, enc, h0, *params):
        ctx = dec.context(enc, src_lengths)
        first, feed, a = dec.initial_state(B, ctx)
        if inner == "deep":             # h0 starts the top cell; the LSTM below starts at zero
            first = (first[0], h0)
        else:
            first = h0
        out, state, w = rnn.run_decoder(dec, xs, (first, feed, a), ctx, tgt_lengths)
        return out, w

    ts = [mg.tensor(a, dtype=F64, requires_grad=True) for a in (xs, enc, h0)]
    assert gradcheck(f, ts + dec.parameters(), seed=c["seed"])


@pytest.mark.parametrize("inner", ["gru", "lstm", "deep"])
@pytest.mark.parametrize("attention", ["additive", "location"])
def test_checkpointed_decoder_equals_plain(inner, attention):
    """Gradients to every parameter, the inputs, the first state and the encoder outputs (reached
    through the context only) are the plain run's."""
    rng = np.random.default_rng(0)
    T, B, S = 7, 3, 5
    dec = make_decoder(2, 3, 4, True, 0, attention, inner)
    xs0, enc0 = rng.standard_normal((T, B, 2)), rng.standard_normal((S, B, 4))
    src_lengths, tgt_lengths = [5, 2, 4], [7, 3, 6]
    results = []
    for k in (None, 1, 3):
        xs, enc = mg.tensor(xs0, requires_grad=True), mg.tensor(enc0, requires_grad=True)
        dec.zero_grad()
        ctx = dec.context(enc, src_lengths)
        state = dec.initial_state(B, ctx)
        out, final, w = rnn.run_decoder(dec, xs, state, ctx, tgt_lengths, checkpoint_every=k)
        h_final = {"gru": final[0], "lstm": final[0][0], "deep": final[0][1]}[inner]
        ((out * out).sum() + (w * w).sum()).backward()
        results.append([out.numpy(), w.numpy(), h_final.numpy(), xs.grad.numpy(),
                        enc.grad.numpy()] + [p.grad.numpy() for p in dec.parameters()])
    assert np.abs(results[0][4]).sum() > 0  # the encoder got a gradient, through the context
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


# --- the encoder-decoder --------------------------------------------------------------------------

V_SRC, V_TGT, E = 7, 6, 3


def make_model(attention=True, seed=0, cell="lstm", layers=2, deep=False):
    g = np.random.default_rng(seed)
    enc = (rnn.LSTM if cell == "lstm" else rnn.GRU)(E, 3, num_layers=layers, bidirectional=True,
                                                    rng=g, dtype=F64)
    if attention:
        inner = (rnn.StepStack([rnn.LSTMCell(E + 4, 4, rng=g, dtype=F64),
                                rnn.LSTMCell(4, 4, rng=g, dtype=F64)]) if deep
                 else rnn.GRUCell(E + 4, 4, rng=g, dtype=F64))
        dec = rnn.AttentionDecoderCell(inner,
                                       rnn.AdditiveAttention(4, 6, 5, rng=g, dtype=F64),
                                       rng=g, dtype=F64)
    else:
        dec = rnn.GRUCell(E, 4, rng=g, dtype=F64)
    return rnn.Seq2Seq(V_SRC, V_TGT, E, enc, dec, rng=g, dtype=F64)


def batch(rng, B, S, T):
    src_lengths = rng.integers(1, S + 1, B)
    tgt_lengths = rng.integers(1, T + 1, B)
    src = rng.integers(0, V_SRC, (S, B))
    tgt = rng.integers(0, V_TGT, (T + 1, B))
    return src, src_lengths, tgt[:-1], tgt[1:], tgt_lengths


@pytest.mark.parametrize("attention,cell,deep", [(True, "lstm", False), (True, "gru", False),
                                                 (True, "gru", True), (False, "lstm", False),
                                                 (False, "gru", False)])
def test_padded_batch_equals_each_example_alone(attention, cell, deep):
    """log-probs, attention weights and every parameter's gradient (a sum over the examples)."""
    model = make_model(attention, cell=cell, deep=deep)
    rng = np.random.default_rng(1)
    src, sl, tin, tout, tl = batch(rng, 4, 5, 4)
    sl[0], tl[0] = 5, 4  # one full-length example, the rest padded

    def run(src, sl, tin, tout, tl):
        model.zero_grad()
        log_p, w = model(src, sl, tin, tl)
        loss = rnn.sequence_cross_entropy(log_p, tout, tl, reduction="sum")
        loss.backward()
        return (log_p.numpy(), None if w is None else w.numpy(),
                {n: p.grad.numpy().copy() for n, p in model.named_parameters()})

    log_p, w, grads = run(src, sl, tin, tout, tl)
    summed = {n: np.zeros_like(g) for n, g in grads.items()}
    for b in range(4):
        s, t = sl[b], tl[b]
        one = run(src[:s, b:b + 1], sl[b:b + 1], tin[:t, b:b + 1], tout[:t, b:b + 1],
                  tl[b:b + 1])
        np.testing.assert_allclose(log_p[:t, b:b + 1], one[0], rtol=1e-9, atol=1e-12)
        if attention:
            np.testing.assert_allclose(w[:t, b:b + 1, :s], one[1], rtol=1e-9, atol=1e-12)
            assert (w[:, b, s:] == 0).all() and (w[t:, b] == 0).all()
        for n in summed:
            summed[n] += one[2][n]
    for n, g in grads.items():
        np.testing.assert_allclose(g, summed[n], rtol=1e-8, atol=1e-11, err_msg=n)


@settings(max_examples=5)
@given(seed=st.integers(0, 2**16), attention=st.booleans())
def test_seq2seq_gradcheck(seed, attention):
    model = make_model(attention, seed=seed % 7, cell="gru", layers=1)
    src, sl, tin, tout, tl = batch(np.random.default_rng(seed), 2, 3, 3)

    def f(*params):
        return model.loss(src, sl, tin, tout, tl)

    assert gradcheck(f, model.parameters(), seed=seed)


def test_key_projection_once_per_source():
    model = make_model(True)
    calls = []
    att = model.decoder.attention
    original = att.precompute
    att.precompute = lambda keys: calls.append(keys.shape) or original(keys)
    src, sl, tin, tout, tl = batch(np.random.default_rng(0), 3, 4, 6)
    model.loss(src, sl, tin, tout, tl).backward()
    assert calls == [(3, 4, 6)]  # one call for 6 decoder steps


@pytest.mark.parametrize("attention", [True, False])
def test_step_function_equals_teacher_forcing(attention):
    model = make_model(attention)
    src, sl, tin, tout, tl = batch(np.random.default_rng(2), 3, 5, 4)
    tl[:] = 4
    log_p, w = model(src, sl, tin, tl)
    state = model.start(src, sl)
    for t in range(4):
        lp, state, weights = model.step(tin[t], state)
        np.testing.assert_allclose(lp.numpy(), log_p.numpy()[t], rtol=1e-10, atol=1e-12)
        if attention:
            np.testing.assert_allclose(weights.numpy(), w.numpy()[t], rtol=1e-10)
        else:
            assert weights is None
    np.testing.assert_allclose(np.exp(lp.numpy()).sum(axis=1), 1.0)


def test_decodes_with_rnn_decoding():
    """rnn.decoding's greedy search drives the step function: its tokens are the argmax of each
    step fed its own output, and the attention it keeps is the step's."""
    from rnn.decoding import beam_search, greedy
    model = make_model(True)
    src, sl, *_ = batch(np.random.default_rng(3), 3, 5, 4)
    hyps = greedy(model, model.start(src, sl), bos=0, eos=1, max_len=6)
    for b, hyp in enumerate(hyps):
        state, prev = model.start(src[:, b:b + 1], sl[b:b + 1]), np.zeros(1, dtype=np.int64)
        for t, token in enumerate(hyp.tokens):
            lp, state, w = model.step(prev, state)
            if t + 1 < 6:                      # the last step may only write the end token
                assert token == lp.numpy()[0].argmax()
            np.testing.assert_allclose(hyp.attention[t], w.numpy()[0], rtol=1e-6)
            prev = np.array([token])
    best = beam_search(model, model.start(src, sl), 0, 1, beam_size=3, max_len=6)
    assert len(best) == 3 and all(h[0].score >= -1e9 for h in best)
    plain = make_model(False)                      # the ablation decodes the same way
    for hyp in beam_search(plain, plain.start(src, sl), 0, 1, beam_size=2, max_len=6):
        assert hyp[0].attention is None and hyp[0].tokens[-1] == 1


def test_seq2seq_on_fake_device_equals_cpu():
    src, sl, tin, tout, tl = batch(np.random.default_rng(4), 3, 4, 3)
    got = {}
    for device in ("cpu", "fake"):
        model = make_model(True, cell="gru").to(device=device)
        loss = model.loss(src, sl, tin, tout, tl)
        loss.backward()
        assert loss.device == device
        got[device] = [loss.numpy()] + [p.grad.numpy() for p in model.parameters()]
    for a, b in zip(got["cpu"], got["fake"]):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


def test_learns_to_reverse():
    """A few hundred updates take a copy-in-reverse task far below chance (log 6 per token)."""
    g = np.random.default_rng(0)
    enc = rnn.GRU(8, 16, bidirectional=True, rng=g)
    dec = rnn.AttentionDecoderCell(rnn.GRUCell(8 + 16, 16, rng=g),
                                   rnn.AdditiveAttention(16, 32, 16, rng=g), rng=g)
    model = rnn.Seq2Seq(6, 6, 8, enc, dec, rng=g)
    opt = mg.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        lengths = g.integers(2, 6, 16)
        src = g.integers(2, 6, (5, 16))
        tgt = np.ones((6, 16), dtype=np.int64)          # 0 start, 1 end
        for b, n in enumerate(lengths):
            tgt[:n, b] = src[:n, b][::-1]
        tin = np.concatenate([np.zeros((1, 16), dtype=np.int64), tgt[:-1]])
        loss = model.loss(src, lengths, tin, tgt, lengths + 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.3 * np.log(6)


def test_errors():
    with pytest.raises(ValueError, match="StepStack: cell 0 outputs 4 features, cell 1 expects 3"):
        rnn.StepStack([rnn.GRUCell(2, 4), rnn.GRUCell(3, 4)])
    gru = rnn.GRUCell(5, 4)
    with pytest.raises(ValueError, match="query_size 3 must be the cell's hidden size 4"):
        rnn.AttentionDecoderCell(gru, rnn.AdditiveAttention(3, 2, 2))
    with pytest.raises(TypeError, match="must be an rnn.Attention"):
        rnn.AttentionDecoderCell(gru, object())
    with pytest.raises(ValueError, match="attentional features"):
        rnn.AttentionDecoderCell(rnn.GRUCell(4, 4), rnn.AdditiveAttention(4, 2, 2))
    dec = rnn.AttentionDecoderCell(gru, rnn.AdditiveAttention(4, 2, 2))
    with pytest.raises(ValueError, match="needs the context"):
        dec.initial_state(2)
    with pytest.raises(ValueError, match="the decoder takes 1 input features"):
        rnn.Seq2Seq(3, 3, 2, rnn.GRU(2, 1, bidirectional=True), dec)
    model = make_model(True)
    with pytest.raises(ValueError, match="src must be int token ids"):
        model.loss(np.zeros((2, 2)), [2, 2], np.zeros((2, 2), int), np.zeros((2, 2), int), [2, 2])
    with pytest.raises(ValueError, match="run_decoder: lengths"):
        model.loss(np.zeros((2, 2), int), [2, 2], np.zeros((2, 2), int), np.zeros((2, 2), int),
                   [3, 2])


def test_docs_attention_blocks_each_run_alone():
    """Every ```python block of docs/attention.md runs by itself in a fresh process."""
    import pathlib
    import re
    import subprocess
    import sys
    root = pathlib.Path(__file__).resolve().parent.parent
    blocks = re.findall(r"^```python\n(.*?)^```", (root / "docs" / "attention.md").read_text(),
                        re.S | re.M)
    assert len(blocks) >= 5
    for k, src in enumerate(blocks):
        run = subprocess.run([sys.executable, "-c", src], cwd=root, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, f"docs/attention.md block {k}:\n{src}\n{run.stderr}"


# --- HRED -----------------------------------------------------------------------------------------

def np_hred(p, turns, turn_lengths, n_turns, tgt_in, tgt_lengths):
    """Tanh-RNN HRED written as loops, one dialogue at a time: log-probs per dialogue (T_b, V)."""
    E = p["embed.weight"]

    def step(prefix, x, h):
        return np.tanh(x @ p[prefix + "weight_ih"].T + h @ p[prefix + "weight_hh"].T
                       + p[prefix + "bias"])

    out = []
    for b in range(turns.shape[2]):
        z = np.zeros(p["context_cell.weight_hh"].shape[0])
        for n in range(n_turns[b]):
            h = np.zeros(p["utterance_encoder.layer0.weight_hh"].shape[0])
            for tok in turns[n, :turn_lengths[n, b], b]:
                h = step("utterance_encoder.layer0.", E[tok], h)
            z = step("context_cell.", h, z)
        s = np.tanh(p["bridge.weight"] @ z + p["bridge.bias"])
        rows = []
        for tok in tgt_in[:tgt_lengths[b], b]:
            s = step("decoder.", np.concatenate([E[tok], z]), s)
            logits = p["out_proj.weight"] @ s + p["out_proj.bias"]
            rows.append(logits - logits.max() - np.log(np.exp(logits - logits.max()).sum()))
        out.append(np.array(rows))
    return out


def make_hred(seed=0, cells="rnn"):
    g = np.random.default_rng(seed)
    if cells == "rnn":
        return rnn.HRED(7, 3, rnn.RNN(3, 4, rng=g, dtype=F64), rnn.RNNCell(4, 5, rng=g, dtype=F64),
                        rnn.RNNCell(3 + 5, 4, rng=g, dtype=F64), rng=g, dtype=F64)
    return rnn.HRED(7, 3, rnn.GRU(3, 4, bidirectional=True, rng=g, dtype=F64),
                    rnn.GRUCell(8, 5, rng=g, dtype=F64), rnn.LSTMCell(3 + 5, 4, rng=g, dtype=F64),
                    rng=g, dtype=F64)


def dialogues(rng, B, N=3, L=4, T=3):
    n_turns = rng.integers(1, N + 1, B)
    turn_lengths = rng.integers(1, L + 1, (N, B))
    turns = rng.integers(0, 7, (N, L, B))
    tgt = rng.integers(0, 7, (T + 1, B))
    return turns, turn_lengths, n_turns, tgt[:-1], tgt[1:], rng.integers(1, T + 1, B)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16))
def test_hred_equals_numpy(seed):
    model = make_hred(seed % 5)
    turns, tl, nt, tin, _, tgl = dialogues(np.random.default_rng(seed), 3)
    log_p = model(turns, tl, nt, tin, tgl).numpy()
    p = {n: v.numpy() for n, v in model.named_parameters()}
    for b, ref in enumerate(np_hred(p, turns, tl, nt, tin, tgl)):
        np.testing.assert_allclose(log_p[:tgl[b], b], ref, rtol=1e-10, atol=1e-12)


@settings(max_examples=4)
@given(seed=st.integers(0, 2**16), cells=st.sampled_from(["rnn", "gated"]))
def test_hred_gradcheck(seed, cells):
    model = make_hred(seed % 5, cells)
    turns, tl, nt, tin, tout, tgl = dialogues(np.random.default_rng(seed), 2)

    def f(*params):
        return model.loss(turns, tl, nt, tin, tout, tgl)

    assert gradcheck(f, model.parameters(), seed=seed)


def test_hred_padded_batch_equals_each_dialogue_alone():
    model = make_hred(0, "gated")
    turns, tl, nt, tin, tout, tgl = dialogues(np.random.default_rng(5), 4)

    def grads(*args):
        model.zero_grad()
        model.loss(*args, reduction="sum").backward()
        return {n: p.grad.numpy().copy() for n, p in model.named_parameters()}

    batch = grads(turns, tl, nt, tin, tout, tgl)
    alone = [grads(turns[:nt[b], :tl[:nt[b], b].max(), b:b + 1], tl[:nt[b], b:b + 1],
                   nt[b:b + 1], tin[:tgl[b], b:b + 1], tout[:tgl[b], b:b + 1], tgl[b:b + 1])
             for b in range(4)]
    for n, g in batch.items():
        np.testing.assert_allclose(g, sum(a[n] for a in alone), rtol=1e-8, atol=1e-11, err_msg=n)


def test_hred_step_equals_teacher_forcing():
    model = make_hred(1, "gated")
    turns, tl, nt, tin, _, _ = dialogues(np.random.default_rng(6), 3)
    log_p = model(turns, tl, nt, tin).numpy()
    state = model.start(turns, tl, nt)
    for t in range(tin.shape[0]):
        lp, state = model.step(tin[t], state)  # HRED has no attention: a 2-tuple
        np.testing.assert_allclose(lp.numpy(), log_p[t], rtol=1e-10, atol=1e-12)


def test_graph_viewer_shows_each_decoder_step_and_one_key_projection():
    import re
    dec = rnn.AttentionDecoderCell(rnn.GRUCell(3 + 4, 4, rng=0, fused=False),
                                   rnn.AdditiveAttention(4, 5, 4, rng=1), rng=2)
    enc = mg.randn(6, 2, 5, requires_grad=True)
    ctx = dec.context(enc, [6, 4])
    out, _, _ = rnn.run_decoder(dec, mg.randn(3, 2, 3), dec.initial_state(2, ctx), ctx)
    src = mg.viz.draw(out.sum(), group="time").source
    assert sorted(set(re.findall(r"t = (\d+)", src))) == ["0", "1", "2"]
    # U k (B, S, A) = (2, 6, 4) is computed once, outside the steps
    assert len(re.findall(r"MatMul\\n\(2, 6, 4\)", src)) == 1


def test_decoder_under_unroll_stacked_and_checkpointing():
    """Without the weights in its state, the decoder is a cell of the ordinary contract:
    `rnn.unroll(..., context=)` plain and checkpointed, and as a layer of `rnn.Stacked`, give the
    outputs and gradients (parameters, inputs, the encoder's outputs through the context) of
    `run_decoder` and of the layers composed by hand."""
    rng = np.random.default_rng(0)
    T, B, S = 7, 3, 5
    g = np.random.default_rng(1)
    dec = rnn.AttentionDecoderCell(rnn.LSTMCell(2 + 3, 3, rng=g, dtype=F64),
                                   rnn.AdditiveAttention(3, 4, 4, rng=g, dtype=F64),
                                   keep_weights=False, rng=g, dtype=F64)
    top = rnn.GRUCell(3, 2, rng=g, dtype=F64)
    keeping = rnn.AttentionDecoderCell(dec.cell, dec.attention, dtype=F64)
    keeping.output_proj = dec.output_proj
    xs0, enc0 = rng.standard_normal((T, B, 2)), rng.standard_normal((S, B, 4))
    src_lengths, tgt_lengths = [5, 2, 4], [7, 3, 6]
    params = dec.parameters() + top.parameters()

    def run(how):
        xs, enc = mg.tensor(xs0, requires_grad=True), mg.tensor(enc0, requires_grad=True)
        for p in params:
            p.grad = None
        ctx = dec.context(enc, src_lengths)
        if how == "by hand":      # the same weights in a cell that keeps a_t: run_decoder's loop
            mid, _, _ = rnn.run_decoder(keeping, xs, keeping.initial_state(B, ctx), ctx,
                                        tgt_lengths)
            out, _ = rnn.unroll(top, mid, lengths=tgt_lengths)
        elif how.startswith("unroll"):
            k = None if how == "unroll" else 2
            mid, _ = rnn.unroll(dec, xs, lengths=tgt_lengths, context=ctx, checkpoint_every=k)
            out, _ = rnn.unroll(top, mid, lengths=tgt_lengths)
        else:
            out, _ = rnn.Stacked([dec, top])(xs, lengths=tgt_lengths, context=ctx,
                                             checkpoint_every=3)
        (out * out).sum().backward()
        return [out.numpy(), xs.grad.numpy(), enc.grad.numpy()] + [p.grad.numpy() for p in params]

    want = run("by hand")
    assert np.abs(want[2]).sum() > 0
    for how in ("unroll", "unroll checkpointed", "stacked checkpointed"):
        for a, b in zip(want, run(how)):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12, err_msg=how)
    with pytest.raises(ValueError, match="keep_weights must be True"):
        rnn.AttentionDecoderCell(rnn.GRUCell(5, 3), rnn.LocationAwareAttention(3, 4, 4),
                                 keep_weights=False)


def test_decoder_keeping_weights_under_unroll():
    """A decoder whose state holds the attention weights (B, S) gets its initial state from the
    context (`initial_state(B, context)`), so it runs under `rnn.unroll(..., context=)` too,
    plain and checkpointed, equal to `run_decoder`'s loop: outputs, final weights, gradients
    of the parameters and of the encoder's outputs."""
    rng = np.random.default_rng(3)
    T, B, S = 6, 3, 4
    g = np.random.default_rng(4)
    dec = rnn.AttentionDecoderCell(rnn.GRUCell(2 + 3, 3, rng=g, dtype=F64),
                                   rnn.LocationAwareAttention(3, 4, 4, rng=g, dtype=F64),
                                   rng=g, dtype=F64)
    xs0, enc0 = rng.standard_normal((T, B, 2)), rng.standard_normal((S, B, 4))
    src_lengths, tgt_lengths = [4, 2, 3], [6, 3, 5]

    def run(how):
        xs, enc = mg.tensor(xs0, requires_grad=True), mg.tensor(enc0, requires_grad=True)
        for p in dec.parameters():
            p.grad = None
        ctx = dec.context(enc, src_lengths)
        if how == "run_decoder":
            out, state, _ = rnn.run_decoder(dec, xs, dec.initial_state(B, ctx), ctx, tgt_lengths)
        else:
            k = None if how == "unroll" else 2
            out, state = rnn.unroll(dec, xs, lengths=tgt_lengths, context=ctx, checkpoint_every=k)
        (out * out).sum().backward()
        return ([out.numpy(), state[2].numpy(), enc.grad.numpy()]
                + [p.grad.numpy() for p in dec.parameters()])

    want = run("run_decoder")
    for how in ("unroll", "unroll checkpointed"):
        for a, b in zip(run(how), want):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
