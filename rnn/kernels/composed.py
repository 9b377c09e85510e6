"""The fused kernels' composed twins: the same maths from minigrad primitives, for
`create_graph=True`.

A fused op's backward is hand-derived on arrays, first order only. Under `create_graph=True`
(second derivatives, Hessian-vector products, gradient penalties) the engine re-runs the op's
`composed` twin, declared on each kernel class, and differentiates that instead: one composed
forward and backward more per op for that pass only (a sequence op's twin runs T composed steps).
To re-run the twin, a recorded node keeps its input tensors until its backward ran: for the step
kernels one more (B, G H) array per step (the projected input gx_t, which they do not save), for
the sequence kernels only h0, c0 and the biases. tests/test_higher_order.py checks the twins equal
to the kernels and the second derivatives against finite differences.
"""
from __future__ import annotations

import functools

import minigrad as mg
from minigrad import backend


def lstm_step(gx, h, c, weight_hh):
    a_i, a_f, a_g, a_o = mg.split(gx + h @ weight_hh.T, 4, axis=1)
    c = mg.sigmoid(a_f) * c + mg.sigmoid(a_i) * mg.tanh(a_g)
    return mg.sigmoid(a_o) * mg.tanh(c), c


def gru_step(gx, h, weight_hh, bias_hh, *, reset_after=False):
    H = h.shape[1]
    x_r, x_z, x_n = mg.split(gx, 3, axis=1)
    if bias_hh is None:
        bias_hh = mg.zeros(3 * H, dtype=gx.dtype, device=gx.device)
    if reset_after:
        h_r, h_z, h_n = mg.split(h @ weight_hh.T + bias_hh, 3, axis=1)
        r, z = mg.sigmoid(x_r + h_r), mg.sigmoid(x_z + h_z)
        n = mg.tanh(x_n + r * h_n)
    else:
        h_r, h_z = mg.split(h @ weight_hh[:2 * H].T + bias_hh[:2 * H], 2, axis=1)
        r, z = mg.sigmoid(x_r + h_r), mg.sigmoid(x_z + h_z)
        n = mg.tanh(x_n + (r * h) @ weight_hh[2 * H:].T + bias_hh[2 * H:])
    return n + z * (h - n)


def rnn_step(gx, h, weight_hh, *, nonlinearity="tanh"):
    a = gx + h @ weight_hh.T
    return mg.relu(a) if nonlinearity == "relu" else mg.tanh(a)


def _loop(step, x, states, weight_ih, bias, lengths):
    """The sequence twins' loop: step(gx_t, *states) -> new states (h first); outputs past each
    sequence's end are zero and the final states are each row's at its own last step."""
    T, B, _ = x.shape
    states = [mg.zeros(B, size, dtype=x.dtype, device=x.device) if s is None else s
              for s, size in states]
    gx = x @ weight_ih.T if bias is None else x @ weight_ih.T + bias
    outs, finals = [], list(states)
    for t in range(T):
        new = step(gx[t], *states)
        states = list(new) if isinstance(new, tuple) else [new]
        if lengths is None:
            outs.append(states[0])
            continue
        keep = backend.to_device((t < lengths)[:, None], x.device)
        last = backend.to_device((lengths == t + 1)[:, None], x.device)
        outs.append(mg.where(keep, states[0], 0.0))
        finals = [mg.where(last, s, f) for s, f in zip(states, finals)]
    return (mg.stack(outs),) + tuple(states if lengths is None else finals)


def lstm_sequence(x, h0, c0, weight_ih, weight_hh, bias, *, lengths=None):
    H = weight_hh.shape[1]
    return _loop(functools.partial(lstm_step, weight_hh=weight_hh), x, [(h0, H), (c0, H)],
                 weight_ih, bias, lengths)


def gru_sequence(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, *, reset_after=False,
                 lengths=None):
    step = functools.partial(gru_step, weight_hh=weight_hh, bias_hh=bias_hh,
                             reset_after=reset_after)
    return _loop(step, x, [(h0, weight_hh.shape[1])], weight_ih, bias_ih, lengths)


def rnn_sequence(x, h0, weight_ih, weight_hh, bias, *, nonlinearity="tanh", lengths=None):
    step = functools.partial(rnn_step, weight_hh=weight_hh, nonlinearity=nonlinearity)
    return _loop(step, x, [(h0, weight_hh.shape[1])], weight_ih, bias, lengths)


gru_step_reset_after = functools.partial(gru_step, reset_after=True)
gru_sequence_reset_after = functools.partial(gru_sequence, reset_after=True)
