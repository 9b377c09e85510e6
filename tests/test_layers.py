"""Layers: Bidirectional vs each sequence run alone, the user MUT1 from docs/rnn.md, Stacked,
DeepTransitionCell and the RNN/LSTM/GRU conveniences."""
import pathlib
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import rnn
from minigrad.testing import gradcheck
from minigrad.testing.strategies import sequences

F64 = "float64"
DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "rnn.md"


def _flat(s):
    return tuple(s) if isinstance(s, tuple) else (s,)


def _doc_namespace():
    """Run the first python block of docs/rnn.md verbatim (the user's MUT1 cell)."""
    block = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    ns = {}
    exec(compile(block, str(DOC), "exec"), ns)
    return ns


def sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def np_mut1_unroll(p, x, lengths):
    """MUT1 (Jozefowicz et al. 2015) in NumPy over a padded batch."""
    T, B, H = x.shape
    h = np.zeros((B, H))
    outs = []
    for t in range(T):
        z = sig(x[t] @ p["w_z"].T + p["b_z"])
        r = sig(x[t] @ p["w_r"].T + h @ p["u_r"].T + p["b_r"])
        new = np.tanh((r * h) @ p["u_h"].T + np.tanh(x[t]) + p["b_h"]) * z + h * (1 - z)
        keep = (t < lengths)[:, None]
        outs.append(np.where(keep, new, 0))
        h = np.where(keep, new, h)
    return np.stack(outs), h


@given(seq=sequences(max_T=5, max_B=3, max_F=3), seed=st.integers(0, 99))
def test_doc_mut1_with_unroll_lengths_and_bidirectional(seq, seed):
    ns = _doc_namespace()
    MyMUT1 = ns["MyMUT1"]
    T, B, H = seq.x.shape
    cell = MyMUT1(H, rng=seed, dtype=F64)
    p = {k: v.numpy() for k, v in cell.named_parameters()}
    out, h = rnn.unroll(cell, mg.tensor(seq.x), lengths=seq.lengths)
    want_out, want_h = np_mut1_unroll(p, seq.x, seq.lengths)
    np.testing.assert_allclose(out.numpy(), want_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h.numpy(), want_h, rtol=1e-10, atol=1e-12)

    # the same maths as the built-in MUT1Cell (square case: no projection)
    builtin = rnn.MUT1Cell(H, H, dtype=F64)
    for mine, theirs in (("w_z", "weight_xz"), ("w_r", "weight_xr"), ("u_r", "weight_hr"),
                         ("u_h", "weight_hh"), ("b_z", "bias_z"), ("b_r", "bias_r"),
                         ("b_h", "bias_h")):
        getattr(builtin, theirs).data[...] = p[mine]
    np.testing.assert_allclose(rnn.unroll(builtin, mg.tensor(seq.x), lengths=seq.lengths)[0]
                               .numpy(), want_out, rtol=1e-10, atol=1e-12)

    bw = MyMUT1(H, rng=seed + 1, dtype=F64)
    bi = rnn.Bidirectional(cell, bw)
    out_bi, (h_fw, h_bw) = bi(mg.tensor(seq.x), lengths=seq.lengths)
    np.testing.assert_allclose(out_bi.numpy()[..., :H], want_out, rtol=1e-10, atol=1e-12)
    p_bw = {k: v.numpy() for k, v in bw.named_parameters()}
    for b in range(B):
        n = seq.lengths[b]
        rev = seq.x[:n, b:b + 1][::-1]
        o, hb = np_mut1_unroll(p_bw, rev, np.array([n]))
        np.testing.assert_allclose(out_bi.numpy()[:n, b:b + 1, H:], o[::-1], rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose(h_bw.numpy()[b:b + 1], hb, rtol=1e-10, atol=1e-12)

    x = mg.tensor(seq.x, requires_grad=True)
    assert gradcheck(lambda x, *ps: bi(x, lengths=seq.lengths)[0],
                     [x, *bi.parameters()], seed=seed)


BI_PAIRS = {
    "lstm_gru": lambda i, s: (rnn.LSTMCell(i, 3, rng=s, dtype=F64),
                              rnn.GRUCell(i, 2, rng=s + 1, dtype=F64)),
    "gru_composed_rnn": lambda i, s: (rnn.GRUCell(i, 2, True, fused=False, rng=s, dtype=F64),
                                      rnn.RNNCell(i, 4, rng=s + 1, dtype=F64)),
    "mut2_peephole": lambda i, s: (rnn.MUT2Cell(i, 2, rng=s, dtype=F64),
                                   rnn.LSTMCell(i, 2, peephole=True, rng=s + 1, dtype=F64)),
}


@pytest.mark.parametrize("pair", sorted(BI_PAIRS))
@given(seq=sequences(max_T=5, max_B=3, max_F=3), seed=st.integers(0, 99))
def test_bidirectional_equals_each_sequence_alone(pair, seq, seed):
    """Forward half = the forward cell on each sequence; backward half = the backward cell on
    each sequence reversed within its length, re-reversed; gradients match too."""
    fw, bw = BI_PAIRS[pair](seq.x.shape[2], seed)
    bi = rnn.Bidirectional(fw, bw)
    T, B, _ = seq.x.shape
    x = mg.tensor(seq.x, requires_grad=True)
    out, (s_fw, s_bw) = bi(x, lengths=seq.lengths)
    H_fw, H_bw = fw.hidden_size, bw.hidden_size
    assert out.shape == (T, B, H_fw + H_bw)
    v = np.sin(np.arange(out.size)).reshape(out.shape)
    gx = mg.grad((out * mg.tensor(v)).sum(), x)
    for b in range(B):
        n = int(seq.lengths[b])
        xb = mg.tensor(seq.x[:n, b:b + 1], requires_grad=True)
        of, sf = rnn.unroll(fw, xb)
        xr = mg.flip(xb, axis=0)
        ob, sb = rnn.unroll(bw, xr)
        ob = mg.flip(ob, axis=0)
        np.testing.assert_allclose(out.numpy()[:n, b:b + 1, :H_fw], of.numpy(), rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose(out.numpy()[:n, b:b + 1, H_fw:], ob.numpy(), rtol=1e-10,
                                   atol=1e-12)
        assert not out.numpy()[n:, b].any()
        for a, c in zip(_flat(s_bw), _flat(sb)):
            np.testing.assert_allclose(a.numpy()[b:b + 1], c.numpy(), rtol=1e-10, atol=1e-12)
        for a, c in zip(_flat(s_fw), _flat(sf)):
            np.testing.assert_allclose(a.numpy()[b:b + 1], c.numpy(), rtol=1e-10, atol=1e-12)
        lb = (of * mg.tensor(v[:n, b:b + 1, :H_fw])).sum() + \
            (ob * mg.tensor(v[:n, b:b + 1, H_fw:])).sum()
        np.testing.assert_allclose(gx.numpy()[:n, b:b + 1], mg.grad(lb, xb).numpy(),
                                   rtol=1e-9, atol=1e-12)
        assert not gx.numpy()[n:, b].any()


@given(seq=sequences(max_T=5, max_B=3, max_F=2))
def test_reverse_sequences(seq):
    x = mg.tensor(seq.x, requires_grad=True)
    r = rnn.reverse_sequences(x, seq.lengths)
    for b, n in enumerate(seq.lengths):
        np.testing.assert_array_equal(r.numpy()[:n, b], seq.x[:n, b][::-1])
        np.testing.assert_array_equal(r.numpy()[n:, b], seq.x[n:, b])
    np.testing.assert_array_equal(rnn.reverse_sequences(r, seq.lengths).numpy(), seq.x)
    np.testing.assert_array_equal(rnn.reverse_sequences(x).numpy(), seq.x[::-1])
    assert gradcheck(lambda x: rnn.reverse_sequences(x, seq.lengths), [x])


def test_bidirectional_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="Bidirectional.*3.*4"):
        rnn.Bidirectional(rnn.GRUCell(3, 2), rnn.GRUCell(4, 2))


# --- Stacked --------------------------------------------------------------------------------

def _stack_cells(seed):
    return [rnn.LSTMCell(2, 3, rng=seed, dtype=F64),
            rnn.Bidirectional(rnn.GRUCell(3, 2, rng=seed + 1, dtype=F64),
                              rnn.RNNCell(3, 1, rng=seed + 2, dtype=F64)),
            rnn.MUT3Cell(3, 3, rng=seed + 3, dtype=F64)]


@given(seq=sequences(max_T=4, max_B=3, max_F=2), seed=st.integers(0, 99),
       residual=st.booleans())
def test_stacked_equals_manual_composition(seq, seed, residual):
    x = np.concatenate([seq.x, seq.x[..., :1]], axis=2)[..., :2]  # two features
    layers = _stack_cells(seed)
    deep = rnn.Stacked(layers, residual=residual)
    out, states = deep(mg.tensor(x), lengths=seq.lengths)
    h = mg.tensor(x)
    h1, s1 = rnn.unroll(layers[0], h, lengths=seq.lengths)
    h2, s2 = layers[1](h1, lengths=seq.lengths)
    h2 = h2 + h1 if residual else h2
    h3, s3 = rnn.unroll(layers[2], h2, lengths=seq.lengths)
    h3 = h3 + h2 if residual else h3
    np.testing.assert_allclose(out.numpy(), h3.numpy(), rtol=1e-12)
    assert len(states) == 3
    np.testing.assert_allclose(states[2].numpy(), s3.numpy(), rtol=1e-12)
    xt = mg.tensor(x, requires_grad=True)
    assert gradcheck(lambda xt, *ps: deep(xt, lengths=seq.lengths)[0],
                     [xt, *deep.parameters()], seed=seed)


def test_stacked_dropout_train_and_eval():
    deep = rnn.Stacked([rnn.RNNCell(2, 4, rng=0, dtype=F64), rnn.RNNCell(4, 4, rng=1, dtype=F64)],
                       dropout=0.5)
    x = mg.tensor(np.random.default_rng(0).standard_normal((3, 2, 2)))
    deep.eval()
    a, _ = deep(x)
    b, _ = deep(x)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    h1, _ = rnn.unroll(deep.layer0, x)
    np.testing.assert_allclose(a.numpy(), rnn.unroll(deep.layer1, h1)[0].numpy(), rtol=1e-12)
    deep.train()
    mg.manual_seed(1)
    c, _ = deep(x)
    mg.manual_seed(1)
    mask = mg.dropout(mg.ones(3, 2, 4, dtype=F64), 0.5)   # the same draw, made by hand
    np.testing.assert_allclose(c.numpy(), rnn.unroll(deep.layer1, h1 * mask)[0].numpy(),
                               rtol=1e-12)


def test_stacked_errors():
    with pytest.raises(ValueError, match="layer 0.*4.*layer 1.*3"):
        rnn.Stacked([rnn.GRUCell(2, 4), rnn.GRUCell(3, 4)])
    with pytest.raises(ValueError, match="residual.*layer 1"):
        rnn.Stacked([rnn.GRUCell(2, 4), rnn.GRUCell(4, 5)], residual=True)
    with pytest.raises(ValueError, match="dropout"):
        rnn.Stacked([rnn.GRUCell(2, 4)], dropout=1.0)


def test_deep_transition_depth_one_is_elman():
    dt = rnn.DeepTransitionCell(2, 3, depth=1, rng=0, dtype=F64)
    el = rnn.RNNCell(2, 3, rng=0, dtype=F64)
    el.weight_ih.data[...] = dt.weight_ih.data
    el.weight_hh.data[...] = dt.weight_hh.data
    el.bias.data[...] = dt.bias_1.data
    x = mg.tensor(np.random.default_rng(0).standard_normal((4, 2, 2)))
    np.testing.assert_allclose(rnn.unroll(dt, x)[0].numpy(), rnn.unroll(el, x)[0].numpy(),
                               rtol=1e-12)


# --- RNN / LSTM / GRU ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_convenience_layers_equal_their_pieces(kind, bidirectional):
    layer = getattr(rnn, kind)(2, 3, num_layers=2, bidirectional=bidirectional, rng=0, dtype=F64)
    x = np.random.default_rng(1).standard_normal((5, 2, 2))
    lengths = [5, 3]
    out, states = layer(mg.tensor(x), lengths=lengths)
    dirs = 2 if bidirectional else 1
    assert out.shape == (5, 2, 3 * dirs) and len(states) == 2
    h = mg.tensor(x)
    for piece in layer.layers:
        if bidirectional:
            assert isinstance(piece, rnn.Bidirectional)
            h, _ = piece(h, lengths=lengths)
        else:
            h, _ = rnn.unroll(piece, h, lengths=lengths)
    np.testing.assert_allclose(out.numpy(), h.numpy(), rtol=1e-12)
    # batch_first reads and writes (B, T, F)
    bf = getattr(rnn, kind)(2, 3, num_layers=2, bidirectional=bidirectional, batch_first=True,
                            rng=0, dtype=F64)
    out_bf, _ = bf(mg.tensor(x.transpose(1, 0, 2)), lengths=lengths)
    np.testing.assert_allclose(out_bf.numpy(), out.numpy().transpose(1, 0, 2), rtol=1e-12)


def test_convenience_layer_kwargs_and_names():
    gru = rnn.GRU(2, 3, reset_after=True, fused=False, rng=0)
    assert gru.layer0.reset_after and not gru.layer0.fused
    names = [n for n, _ in rnn.LSTM(2, 3, num_layers=2, bidirectional=True).named_parameters()]
    assert "layer1.backward_cell.weight_hh" in names
    rnn_relu = rnn.RNN(2, 3, nonlinearity="relu")
    assert rnn_relu.layer0.nonlinearity == "relu"
    with pytest.raises(ValueError, match="num_layers"):
        rnn.LSTM(2, 3, num_layers=0)
