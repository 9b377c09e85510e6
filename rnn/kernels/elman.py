"""The fused Elman RNN: one step (`RNNStep`) or a whole sequence (`RNNSequence`) as ONE graph
node with a hand-derived backward, tanh or relu. tests/test_fused.py proves both equal to the
same maths composed from minigrad primitives.
"""
from __future__ import annotations

from minigrad.engine import Function
from minigrad.ops import array_matmul
from minigrad.tensor import Tensor
from rnn.kernels import composed as twins
from rnn.kernels.layout import (check_lengths, check_operands, dims_of, grads_at_steps,
                                hidden_of, lengths_of, one_minus_square, outputs_and_final,
                                state_buffer, step_masks, with_bias)

__all__ = ["RNNSequence", "RNNStep", "rnn_sequence", "rnn_step"]


class RNNStep(Function):
    """One Elman step from gx = x_t W_ih^T + b (B, H), h (B, H), weight_hh (H, H):

        h' = act(gx + h W_hh^T),  act = tanh or relu
        d = gh' act'(.) with tanh' = 1 - h'^2, relu' = [h' > 0];  gx = d, gh = d W_hh, gW = d^T h

    Saves h' (the derivative is a function of it) and h (for gW): 2 (B, H) arrays.
    """

    composed = staticmethod(twins.rnn_step)  # differentiated under create_graph

    def forward(self, gx, h, weight_hh, *, nonlinearity="tanh"):
        self.relu = nonlinearity == "relu"
        out = h @ weight_hh.T
        out += gx
        if self.relu:
            self.xp.maximum(out, 0, out=out)
        else:
            self.xp.tanh(out, out=out)
        self.save_for_backward(out, h, weight_hh)
        return out

    def backward(self, gout):
        out, h, weight_hh = self.saved
        d = gout * (out > 0) if self.relu else gout * (1 - out * out)
        n = self.needs_input_grad
        return d, (d @ weight_hh if n[1] else None), (array_matmul(d.T, h) if n[2] else None)


class RNNSequence(Function):
    """The Elman RNN over a whole sequence as one op: x (T, B, I), h0 (B, H) or None (zeros),
    weight_ih (H, I), weight_hh (H, H), bias (H) or None -> out (T, B, H), h_T (B, H).

    Per step the maths of `RNNStep`, in the layout of `rnn.kernels.layout`: the input
    projection of all steps is copied into the state buffer, which the loop finishes in place.
    Saves the states (H + 1 per step: the activation derivative is a function of them), x, the
    weights and the lengths: one (B, H) array per step.
    """

    composed = staticmethod(twins.rnn_sequence)  # differentiated under create_graph

    def forward(self, x, h0, weight_ih, weight_hh, bias, *, nonlinearity="tanh", lengths=None):
        xp = self.xp
        T, B, I = x.shape
        H, dt = weight_hh.shape[1], x.dtype
        self.relu = nonlinearity == "relu"
        L = lengths_of(lengths, T, B, dt, x)
        Hs = state_buffer(h0, T, B, H, dt, xp)
        HsT = Hs.transpose(1, 0, 2)
        Hs[:H, 1:] = (weight_ih @ x.reshape(T * B, I).T).reshape(H, T, B)   # projections
        w_hh = with_bias(weight_hh, bias, xp)
        tmp = xp.empty((H, B), dt)
        for h, h_new, m in zip(HsT[:-1], HsT[1:, :H], step_masks(L, T)):
            xp.matmul(w_hh, h, out=tmp)
            h_new += tmp
            if self.relu:
                xp.maximum(h_new, 0, out=h_new)
            else:
                xp.tanh(h_new, out=h_new)
            if m is not None:
                h_new *= m
        self.save_for_backward(x, weight_ih, weight_hh, Hs, lengths)
        return outputs_and_final(Hs, L)

    def backward(self, gout, gh):
        x, weight_ih, weight_hh, Hs, lengths = self.saved
        xp, n = self.xp, self.needs_input_grad
        T, B, I = x.shape
        H, dt = weight_hh.shape[1], x.dtype
        L = lengths_of(lengths, T, B, dt, x)
        gsteps, dh = grads_at_steps(L, gout, gh, xp)
        D = xp.empty((H, T, B), dt)                           # act'(.) for all steps, then d
        out = Hs[:H, 1:]
        if self.relu:
            D[...] = out > 0
        else:
            one_minus_square(out, D, xp)
        w_hhT = weight_hh.T
        for t, gs, d in zip(range(T - 1, -1, -1), gsteps[::-1], D.transpose(1, 0, 2)[::-1]):
            dh += gs
            d *= dh
            if t or n[1]:
                xp.matmul(w_hhT, d, out=dh)
        if L is not None:
            L.to_initial(dh.T, gh)
        D2 = D.reshape(H, T * B)
        gwb = D2 @ Hs[:, :T].reshape(H + 1, T * B).T if n[3] or n[4] else None
        return ((D2.T @ weight_ih).reshape(T, B, I) if n[0] else None,
                dh.T if n[1] else None,
                D2 @ x.reshape(T * B, I) if n[2] else None,
                gwb[:, :H] if n[3] else None,
                gwb[:, H] if n[4] else None)


def check_nonlinearity(op, nonlinearity):
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{op}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


def rnn_step(gx_t: Tensor, h: Tensor, weight_hh: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """One Elman step as one op: h' = act(gx_t + h W_hh^T) (B, H), act tanh or relu.

    >>> import minigrad as mg
    >>> rnn_step(mg.randn(2, 3), mg.zeros(2, 3), mg.randn(3, 3), "relu").shape
    (2, 3)
    """
    check_nonlinearity("rnn_step", nonlinearity)
    B, H = dims_of("rnn_step", "h", h, 2)
    check_operands("rnn_step", [("gx_t", gx_t, (B, H)), ("h", h, (B, H)),
                        ("weight_hh", weight_hh, (H, H))])
    return RNNStep.apply(gx_t, h, weight_hh, nonlinearity=nonlinearity)


def rnn_sequence(x: Tensor, h0: Tensor | None, weight_ih: Tensor, weight_hh: Tensor,
                 bias: Tensor | None = None, nonlinearity: str = "tanh",
                 lengths=None) -> tuple[Tensor, Tensor]:
    """A whole Elman RNN sequence as one op: x (T, B, I) -> (out (T, B, H), h_T (B, H)).

    h0 None means zeros; `lengths` as in `lstm_sequence`. See `RNNSequence`.

    >>> import minigrad as mg
    >>> out, h = rnn_sequence(mg.randn(5, 2, 3), None, mg.randn(4, 3), mg.randn(4, 4))
    >>> out.shape
    (5, 2, 4)
    """
    check_nonlinearity("rnn_sequence", nonlinearity)
    T, B, I = dims_of("rnn_sequence", "x", x, 3)
    H = hidden_of("rnn_sequence", weight_hh, 1)
    check_operands("rnn_sequence", [("x", x, (T, B, I)), ("h0", h0, (B, H)),
                            ("weight_ih", weight_ih, (H, I)), ("weight_hh", weight_hh, (H, H)),
                            ("bias", bias, (H,))])
    return RNNSequence.apply(x, h0, weight_ih, weight_hh, bias, nonlinearity=nonlinearity,
                             lengths=check_lengths("rnn_sequence", lengths, T, B, x))
