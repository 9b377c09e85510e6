"""The cell zoo: Elman RNN, LSTM (with peepholes and the eight "Search Space Odyssey" variants),
GRU (both reset forms), MUT1-3 and the Phased LSTM. Every cell is time-major: a sequence is
(T, B, I) in and (T, B, H) out; one step is (B, I) in and (B, H) out.

RNNCell, the vanilla LSTMCell and GRUCell run each step as one fused op (`rnn.kernels`,
hand-derived backward) when `fused=True`, and offer both fast paths of the `Cell` contract:
`precompute_inputs` (the input projection of all T steps as one matrix product) with `step`, and,
when fused, `sequence_kernel` (the whole loop as one op). That kernel hands small problems to
the compiled path of the composed step instead under `rnn.compiling("numba")`, where numba's
executor is faster (`compiled_is_faster`; docs/compiled.md, "The built-in cells"). With
`fused=False` they are composed from minigrad primitives, so every gate shows in the graph. The
peephole LSTM, its variants, MUT and Phased cells are always composed.
"""
from __future__ import annotations

import numpy as np

import minigrad as mg
from minigrad import checks
from rnn import compiled, kernels
from rnn.cell import Cell, check_input

# When the built-in fused cells (RNNCell, LSTMCell, GRUCell) hand their sequence to the compiled
# path instead of their hand-written kernel: `rnn.compiling` mode in COMPILED_MODES, numba's
# executor available, NumPy float32/float64 inputs, H <= COMPILED_MAX_HIDDEN and
# B * H <= COMPILED_MAX_SIZE. Small steps are dominated by the kernel's ~15 NumPy calls per step,
# which the compiled loop does not pay; from B * H of a few thousand (or H >= 96 at B = 1:
# numba's executor then calls BLAS's GEMM for a single row) the hand kernel's large ufunc calls
# win. Not in "auto" by default: a built-in cell would pay numba's compile (about a second per
# loop) at its first call and change from the hand kernel's numbers by round-off; add "auto" to
# COMPILED_MODES to take it there too.
COMPILED_MODES = ("numba",)
COMPILED_MAX_HIDDEN = 64
COMPILED_MAX_SIZE = 1024


def _project(x, weight, bias):
    """x @ weight.T + bias for x (..., I): one 2-D matrix product over all leading axes."""
    if x.ndim == 2:
        return x @ weight.T + bias
    lead = x.shape[:-1]
    out = x.reshape(-1, x.shape[-1]) @ weight.T + bias
    return out.reshape(*lead, weight.shape[0])


def _jit_available() -> bool:
    try:
        from minigrad import jit  # optional: the `jit` extra
    except ImportError:
        return False
    return jit.available()


def compiled_is_faster(cell, inputs) -> bool:
    """Whether a fused built-in cell runs `inputs` (T, B, I) faster through the compiled path
    (numba's executor running the cell's composed step) than through its hand-written sequence
    kernel: see `COMPILED_MODES`, `COMPILED_MAX_HIDDEN` and `COMPILED_MAX_SIZE` above for the
    rule (by default: under `rnn.compiling("numba")`, H <= 64 and B * H <= 1024)."""
    H, B = cell.hidden_size, inputs.shape[1]
    return (H <= COMPILED_MAX_HIDDEN and B * H <= COMPILED_MAX_SIZE
            and compiled.mode() in COMPILED_MODES and type(inputs.data) is np.ndarray
            and inputs.dtype in (np.float32, np.float64) and _jit_available())


class _Projected(Cell):
    """A cell whose step starts with `gx_t = x_t @ weight_ih.T + b` (precomputable for all T)."""

    def _compiled_sequence(self, inputs, state, lengths):
        """The sequence through the compiled path of the cell's composed step (the step of
        `fused=False`: the same maths, one op per primitive) when `compiled_is_faster`, else
        None (the caller runs its hand kernel)."""
        if not compiled_is_faster(self, inputs):
            return None
        self.fused = False  # traced as the composed step; put back whatever happens
        try:
            return compiled.run(self, inputs, state, lengths)
        finally:
            self.fused = True

    def precompute_inputs(self, inputs):
        """The input projection of every step at once: (T, B, I) -> (T, B, G)."""
        return _project(inputs, self.weight_ih, self._input_bias())

    def _input_bias(self):
        return self.bias

    def forward(self, x_t, state):
        check_input(self, x_t)
        return self.step(_project(x_t, self.weight_ih, self._input_bias()), state)



# --- Elman RNN ------------------------------------------------------------------------------

class RNNCell(_Projected):
    """Elman cell: h' = act(W_ih x_t + b + W_hh h), act = tanh or relu; output h'.

    Parameters: `weight_ih` (H, I), `weight_hh` (H, H), `bias` (H). Shapes: x_t (B, I), h (B, H);
    sequences (T, B, I) -> (T, B, H). PyTorch's `bias_ih + bias_hh` is our `bias`.

    >>> import minigrad as mg, rnn
    >>> cell = rnn.RNNCell(3, 4, rng=0)
    >>> out, h = cell(mg.randn(2, 3), cell.initial_state(2))
    >>> out.shape
    (2, 4)
    """

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh", *,
                 fused: bool = True, rng=None, dtype=None, device=None):
        super().__init__(input_size, hidden_size, rng=rng, dtype=dtype, device=device)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got "
                             f"{nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self.fused = bool(fused)
        H = hidden_size
        self.weight_ih = self.parameter(H, input_size)
        self.weight_hh = self.parameter(H, H)
        self.bias = self.parameter(H)

    def step(self, gx_t, h):
        """One step from the projected input gx_t (B, H): returns (h', h')."""
        if self.fused:
            h = kernels.rnn_step(gx_t, h, self.weight_hh, self.nonlinearity)
        else:
            a = gx_t + h @ self.weight_hh.T
            h = mg.tanh(a) if self.nonlinearity == "tanh" else mg.relu(a)
        return h, h

    def sequence_kernel(self, inputs, h0, lengths=None):
        """The whole loop as one op: (T, B, I) -> ((T, B, H), h_T); None when not fused.
        Under `rnn.compiling("numba")` small problems run the composed step through the
        compiled path instead (`compiled_is_faster`), others the hand-written kernel."""
        if not self.fused:
            return None
        res = self._compiled_sequence(inputs, h0, lengths)
        if res is not None:
            return res
        return kernels.rnn_sequence(inputs, h0, self.weight_ih, self.weight_hh, self.bias,
                                       nonlinearity=self.nonlinearity, lengths=lengths)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}"


# --- LSTM -----------------------------------------------------------------------------------

_VARIANTS = ("NIG", "NFG", "NOG", "NIAF", "NOAF", "NP", "CIFG", "FGR")


class LSTMCell(_Projected):
    """Long short-term memory cell; state (h, c), output h.

    Gate blocks of `weight_ih` (4H, I), `weight_hh` (4H, H) and `bias` (4H) are ordered input,
    forget, candidate, output (PyTorch's layout; PyTorch's `bias_ih + bias_hh` is our `bias`):

        [a_i, a_f, a_g, a_o] = W_ih x_t + b + W_hh h
        i = sigmoid(a_i),  f = sigmoid(a_f),  g = tanh(a_g),  o = sigmoid(a_o)
        c' = f * c + i * g,   h' = o * tanh(c')

    `forget_bias` sets the forget block of `bias` at initialisation (the rest is uniform), so the
    cell starts by remembering. Shapes: x_t (B, I), h and c (B, H); sequences (T, B, I) ->
    (T, B, H).

    Peepholes (`peephole=True`) are diagonal weights `weight_ci`, `weight_cf`, `weight_co` (H,):
    a_i += w_ci * c, a_f += w_cf * c (the previous cell state), a_o += w_co * c' (the new one).

    `variant` picks one of the eight variants of Greff et al. 2017, "LSTM: A Search Space Odyssey",
    each a change to the paper's baseline, which is the LSTM above *with* peepholes (so a variant
    implies peepholes, except NP): NIG i = 1; NFG f = 1; NOG o = 1; NIAF g = a_g (no input
    activation); NOAF h' = o * c' (no output activation); NP no peepholes; CIFG f = 1 - i;
    FGR (full gate recurrence): the paper adds to each of the i, f, o gates the previous step's
    activations of all three gates through its own recurrent matrix, nine H x H matrices R_{gk};
    we hold them as one `weight_gates` (3H, 3H) with blocks [i; f; o] x [i; f; o], so
    [a_i; a_f; a_o] += weight_gates @ [i; f; o]_{t-1}, and the state becomes (h, c, gates) with
    gates (B, 3H) zero at t = 0. Weights of a gate a variant removes keep their place in the
    common layout and get no gradient.

    The peephole cell and the variants use the composed path; the vanilla cell runs fused.

    >>> import minigrad as mg, rnn
    >>> cell = rnn.LSTMCell(3, 4, rng=0)
    >>> h, (h, c) = cell(mg.randn(2, 3), cell.initial_state(2))
    >>> h.shape, c.shape
    ((2, 4), (2, 4))
    """

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0,
                 peephole: bool = False, variant: str | None = None, *, fused: bool = True,
                 rng=None, dtype=None, device=None):
        super().__init__(input_size, hidden_size, rng=rng, dtype=dtype, device=device)
        if variant is not None and variant not in _VARIANTS:
            raise ValueError(f"LSTMCell: variant must be one of {_VARIANTS} or None, got "
                             f"{variant!r}")
        self.variant = variant
        self.peephole = bool(peephole) if variant is None else variant != "NP"
        self.forget_bias = checks.real(forget_bias, "LSTMCell", "forget_bias")
        self.fused = bool(fused) and not self.peephole and variant is None
        H = hidden_size
        self.weight_ih = self.parameter(4 * H, input_size)
        self.weight_hh = self.parameter(4 * H, H)
        bias = self.parameter(4 * H)
        bias.data[H:2 * H] = forget_bias
        self.bias = bias
        if self.peephole:
            self.weight_ci = self.parameter(H)
            self.weight_cf = self.parameter(H)
            self.weight_co = self.parameter(H)
        if variant == "FGR":
            self.weight_gates = self.parameter(3 * H, 3 * H)

    def initial_state(self, batch_size: int):
        """(h, c) zeros (B, H); FGR adds the previous gates (B, 3H)."""
        if self.variant == "FGR":
            return (self.zeros(batch_size), self.zeros(batch_size),
                    self.zeros(batch_size, 3 * self.hidden_size))
        return self.zeros(batch_size), self.zeros(batch_size)

    def step(self, gx_t, state):
        """One step from the projected input gx_t (B, 4H): returns (h', (h', c'))."""
        if self.peephole or self.variant is not None:
            return self._variant_step(gx_t, state)
        h, c = state
        if self.fused:
            h, c = kernels.lstm_step(gx_t, h, c, self.weight_hh)
            return h, (h, c)
        a_i, a_f, a_g, a_o = mg.split(gx_t + h @ self.weight_hh.T, 4, axis=1)
        i, f, g, o = mg.sigmoid(a_i), mg.sigmoid(a_f), mg.tanh(a_g), mg.sigmoid(a_o)
        c = f * c + i * g
        h = o * mg.tanh(c)
        return h, (h, c)

    def _variant_step(self, gx_t, state):
        v = self.variant
        h, c = state[0], state[1]
        a_i, a_f, a_g, a_o = mg.split(gx_t + h @ self.weight_hh.T, 4, axis=1)
        if v == "FGR":
            r_i, r_f, r_o = mg.split(state[2] @ self.weight_gates.T, 3, axis=1)
            a_i, a_f, a_o = a_i + r_i, a_f + r_f, a_o + r_o
        if self.peephole:
            a_i, a_f = a_i + self.weight_ci * c, a_f + self.weight_cf * c
        i = 1.0 if v == "NIG" else mg.sigmoid(a_i)
        f = 1.0 if v == "NFG" else (1 - i) if v == "CIFG" else mg.sigmoid(a_f)
        g = a_g if v == "NIAF" else mg.tanh(a_g)
        c = f * c + i * g
        if self.peephole:
            a_o = a_o + self.weight_co * c
        o = 1.0 if v == "NOG" else mg.sigmoid(a_o)
        h = o * (c if v == "NOAF" else mg.tanh(c))
        if v == "FGR":
            return h, (h, c, mg.concat([i, f, o], axis=1))
        return h, (h, c)

    def sequence_kernel(self, inputs, state, lengths=None):
        """The whole loop as one op: (T, B, I) -> ((T, B, H), (h_T, c_T)); None when not fused
        (fused=False, peepholes or a variant). Under `rnn.compiling("numba")` small problems run
        the composed step through the compiled path instead (`compiled_is_faster`), others the
        hand-written kernel."""
        if not self.fused:
            return None
        res = self._compiled_sequence(inputs, state, lengths)
        if res is not None:
            return res
        h0, c0 = state
        out, h, c = kernels.lstm_sequence(inputs, h0, c0, self.weight_ih, self.weight_hh,
                                             self.bias, lengths=lengths)
        return out, (h, c)

    def extra_repr(self):
        extra = f", variant={self.variant!r}" if self.variant else (
            ", peephole=True" if self.peephole else "")
        return f"{self.input_size}, {self.hidden_size}{extra}"


# --- GRU ------------------------------------------------------------------------------------

class GRUCell(_Projected):
    """Gated recurrent unit (Cho et al. 2014); state and output h.

    Blocks of `weight_ih` (3H, I), `weight_hh` (3H, H), `bias_ih` and `bias_hh` (3H) are ordered
    reset, update, new (PyTorch's layout):

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr),  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        g = tanh(W_in x + b_in + W_hn (r * h) + b_hn)        (reset_after=False, Cho's form)
        g = tanh(W_in x + b_in + r * (W_hn h + b_hn))        (reset_after=True, cuDNN/PyTorch)
        h' = z * h + (1 - z) * g

    Shapes: x_t (B, I), h (B, H); sequences (T, B, I) -> (T, B, H).

    >>> import minigrad as mg, rnn
    >>> cell = rnn.GRUCell(3, 4, reset_after=True, rng=0)
    >>> cell(mg.randn(2, 3), cell.initial_state(2))[0].shape
    (2, 4)
    """

    def __init__(self, input_size: int, hidden_size: int, reset_after: bool = False, *,
                 fused: bool = True, rng=None, dtype=None, device=None):
        super().__init__(input_size, hidden_size, rng=rng, dtype=dtype, device=device)
        self.reset_after = bool(reset_after)
        self.fused = bool(fused)
        H = hidden_size
        self.weight_ih = self.parameter(3 * H, input_size)
        self.weight_hh = self.parameter(3 * H, H)
        self.bias_ih = self.parameter(3 * H)
        self.bias_hh = self.parameter(3 * H)

    def _input_bias(self):
        return self.bias_ih

    def step(self, gx_t, h):
        """One step from the projected input gx_t = W_ih x_t + b_ih (B, 3H): returns (h', h')."""
        if self.fused:
            h = kernels.gru_step(gx_t, h, self.weight_hh, self.bias_hh, self.reset_after)
            return h, h
        H = self.hidden_size
        x_r, x_z, x_n = mg.split(gx_t, 3, axis=1)
        if self.reset_after:
            h_r, h_z, h_n = mg.split(h @ self.weight_hh.T + self.bias_hh, 3, axis=1)
            r, z = mg.sigmoid(x_r + h_r), mg.sigmoid(x_z + h_z)
            g = mg.tanh(x_n + r * h_n)
        else:
            w_rz, w_n = mg.split(self.weight_hh, [2 * H], axis=0)
            b_rz, b_n = mg.split(self.bias_hh, [2 * H], axis=0)
            h_r, h_z = mg.split(h @ w_rz.T + b_rz, 2, axis=1)
            r, z = mg.sigmoid(x_r + h_r), mg.sigmoid(x_z + h_z)
            g = mg.tanh(x_n + (r * h) @ w_n.T + b_n)
        h = z * h + (1 - z) * g
        return h, h

    def sequence_kernel(self, inputs, h0, lengths=None):
        """The whole loop as one op: (T, B, I) -> ((T, B, H), h_T); None when not fused.
        Under `rnn.compiling("numba")` small problems run the composed step through the
        compiled path instead (`compiled_is_faster`), others the hand-written kernel."""
        if not self.fused:
            return None
        res = self._compiled_sequence(inputs, h0, lengths)
        if res is not None:
            return res
        return kernels.gru_sequence(inputs, h0, self.weight_ih, self.weight_hh, self.bias_ih,
                                       self.bias_hh, reset_after=self.reset_after,
                                       lengths=lengths)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, reset_after={self.reset_after}"


# --- MUT1-3 ---------------------------------------------------------------------------------

class _MUT(Cell):
    """Shared set-up of the three evolved cells; state and output h (B, H)."""

    def __init__(self, input_size, hidden_size, *, rng=None, dtype=None, device=None):
        super().__init__(input_size, hidden_size, rng=rng, dtype=dtype, device=device)
        H, Ii = hidden_size, input_size
        self.weight_xz = self.parameter(H, Ii)
        self.weight_hh = self.parameter(H, H)
        self.bias_z, self.bias_r, self.bias_h = self.parameter(H), self.parameter(H), \
            self.parameter(H)
        if self._needs_projection() and Ii != H:
            # the paper's bare x_t / tanh(x_t) term needs I == H: learn a map R^I -> R^H instead
            self.weight_p = self.parameter(H, Ii)

    def _needs_projection(self):
        return False

    def _raw(self, x):
        """The paper's x_t term: x itself when I == H, else the learned projection weight_p x."""
        return x @ self.weight_p.T if "weight_p" in self._parameters else x

    def _merge(self, z, h, cand):
        return z * mg.tanh(cand) + (1 - z) * h


class MUT1Cell(_MUT):
    """MUT1 of Jozefowicz, Zaremba & Sutskever 2015, "An Empirical Exploration of Recurrent
    Network Architectures" (state and output h):

        z = sigmoid(W_xz x_t + b_z)
        r = sigmoid(W_xr x_t + W_hr h + b_r)
        h' = tanh(W_hh (r * h) + tanh(x_t) + b_h) * z + h * (1 - z)

    tanh(x_t) needs I == H; when they differ x_t is first mapped by a learned `weight_p` (H, I),
    giving tanh(weight_p x_t). Parameters: weight_xz, weight_xr (H, I), weight_hr, weight_hh (H, H),
    bias_z, bias_r, bias_h (H). Shapes: x_t (B, I), h (B, H); sequences (T, B, I) -> (T, B, H).

    >>> import minigrad as mg, rnn
    >>> cell = rnn.MUT1Cell(4, 4, rng=0)
    >>> cell(mg.randn(2, 4), cell.initial_state(2))[0].shape
    (2, 4)
    """

    def __init__(self, input_size: int, hidden_size: int, *, rng=None, dtype=None, device=None):
        super().__init__(input_size, hidden_size, rng=rng, dtype=dtype, device=device)
        self.weight_xr = self.parameter(hidden_size, input_size)
        self.weight_hr = self.parameter(hidden_size, hidden_size)

    def _needs_projection(self):
        return True

    def forward(self, x_t, h):
        z = mg.sigmoid(x_t @ self.weight_xz.T + self.bias_z)
        r = mg.sigmoid(x_t @ self.weight_xr.T + h @ self.weight_hr.T + self.bias_r)
        h = self._merge(z, h, (r * h) @ self.weight_hh.T + mg.tanh(self._raw(x_t)) + self.bias_h)
        return h, h


class MUT2Cell(_MUT):
    """MUT2 of Jozefowicz, Zaremba & Sutskever 2015 (state and output h):

        z = sigmoid(W_xz x_t + W_hz h + b_z)
        r = sigmoid(x_t + W_hr h + b_r)
        h' = tanh(W_hh (r * h) + W_xh x_t + b_h) * z + h * (1 - z)

    The bare x_t in r needs I == H; when they differ it is replaced by a learned `weight_p x_t`
    with `weight_p` (H, I). Parameters: weight_xz, weight_xh (H, I), weight_hz, weight_hr,
    weight_hh (H, H), bias_z, bias_r, bias_h (H). Shapes: x_t (B, I), h (B, H).

    >>> import minigrad as mg, rnn
    >>> cell = rnn.MUT2Cell(3, 4, rng=0)
    >>> cell(mg.randn(2, 3), cell.initial_state(2))[0].shape
    (2, 4)
    """

    def __init__(self, input_size: int, hidden_size: int, *, rng=None, dtype=None, device=None):
        super().__init__(input_size, hidden_size, rng=rng, dtype=dtype, device=device)
        self.weight_xh = self.parameter(hidden_size, input_size)
        self.weight_hz = self.parameter(hidden_size, hidden_size)
        self.weight_hr = self.parameter(hidden_size, hidden_size)

    def _needs_projection(self):
        return True

    def forward(self, x_t, h):
        z = mg.sigmoid(x_t @ self.weight_xz.T + h @ self.weight_hz.T + self.bias_z)
        r = mg.sigmoid(self._raw(x_t) + h @ self.weight_hr.T + self.bias_r)
        h = self._merge(z, h, (r * h) @ self.weight_hh.T + x_t @ self.weight_xh.T + self.bias_h)
        return h, h


class MUT3Cell(_MUT):
    """MUT3 of Jozefowicz, Zaremba & Sutskever 2015 (state and output h):

        z = sigmoid(W_xz x_t + W_hz tanh(h) + b_z)
        r = sigmoid(W_xr x_t + W_hr h + b_r)
        h' = tanh(W_hh (r * h) + W_xh x_t + b_h) * z + h * (1 - z)

    Any I and H (no bare x_t term). Parameters: weight_xz, weight_xr, weight_xh (H, I), weight_hz,
    weight_hr, weight_hh (H, H), bias_z, bias_r, bias_h (H). Shapes: x_t (B, I), h (B, H).

    >>> import minigrad as mg, rnn
    >>> cell = rnn.MUT3Cell(3, 4, rng=0)
    >>> cell(mg.randn(2, 3), cell.initial_state(2))[0].shape
    (2, 4)
    """

    def __init__(self, input_size: int, hidden_size: int, *, rng=None, dtype=None, device=None):
        super().__init__(input_size, hidden_size, rng=rng, dtype=dtype, device=device)
        self.weight_xr = self.parameter(hidden_size, input_size)
        self.weight_xh = self.parameter(hidden_size, input_size)
        self.weight_hz = self.parameter(hidden_size, hidden_size)
        self.weight_hr = self.parameter(hidden_size, hidden_size)

    def forward(self, x_t, h):
        z = mg.sigmoid(x_t @ self.weight_xz.T + mg.tanh(h) @ self.weight_hz.T + self.bias_z)
        r = mg.sigmoid(x_t @ self.weight_xr.T + h @ self.weight_hr.T + self.bias_r)
        h = self._merge(z, h, (r * h) @ self.weight_hh.T + x_t @ self.weight_xh.T + self.bias_h)
        return h, h


# --- Phased LSTM ----------------------------------------------------------------------------

class PhasedLSTMCell(Cell):
    """Phased LSTM (Neil, Pfeiffer & Liu 2016): an LSTM whose units update only while their time
    gate is open; state (h, c), output h.

    Timestamps travel with the inputs as their LAST feature: each step's input is (B, I + 1), the
    time of that step in column I, so whole sequences are (T, B, I + 1) and work unchanged with
    `unroll`, `lengths`, `Bidirectional` and checkpointing. With phi = ((t - s) mod tau) / tau,

        k = 2 phi / r_on            if phi < r_on / 2      (opening)
            2 - 2 phi / r_on        if phi < r_on          (closing)
            alpha * phi             otherwise              (closed; alpha = 0 in eval mode)
        c~, h~ = the LSTM step (gates i, f, g, o as LSTMCell, no peepholes)
        c' = k * c~ + (1 - k) * c,   h' = k * h~ + (1 - k) * h

    Learned per unit (H,): period `tau` (init exp(U(0, 3)), as the paper), shift `shift` (init
    U(0, tau)) and open ratio `r_on` (init 0.05); plus the LSTM's weight_ih (4H, I), weight_hh
    (4H, H) and bias (4H). The mod is composed as (t - s) - tau * floor((t - s) / tau) with the
    floor held constant, so gradients reach tau, s and r_on everywhere except at the kinks.

    >>> import minigrad as mg, rnn
    >>> cell = rnn.PhasedLSTMCell(3, 4, rng=0)
    >>> x_t = mg.concat([mg.randn(2, 3), mg.tensor([[0.5], [1.5]])], axis=1)   # time 0.5, 1.5
    >>> cell(x_t, cell.initial_state(2))[0].shape
    (2, 4)
    """

    def __init__(self, input_size: int, hidden_size: int, leak: float = 1e-3,
                 r_on: float = 0.05, forget_bias: float = 1.0, *, rng=None, dtype=None,
                 device=None):
        super().__init__(input_size, hidden_size, rng=rng, dtype=dtype, device=device)
        H = hidden_size
        self.leak = checks.real(leak, "PhasedLSTMCell", "leak", low=0)
        r_on = checks.real(r_on, "PhasedLSTMCell", "r_on", low=0, low_open=True, high=1)
        forget_bias = checks.real(forget_bias, "PhasedLSTMCell", "forget_bias")
        self.weight_ih = self.parameter(4 * H, input_size)
        self.weight_hh = self.parameter(4 * H, H)
        bias = self.parameter(4 * H)
        bias.data[H:2 * H] = forget_bias
        self.bias = bias
        tau = np.exp(self._rng.uniform(0.0, 3.0, size=H))
        self.tau = mg.nn.Parameter(tau.astype(self._init_dtype), device=self._init_device)
        shift = self._rng.uniform(0.0, 1.0, size=H) * tau
        self.shift = mg.nn.Parameter(shift.astype(self._init_dtype), device=self._init_device)
        self.r_on = self.parameter(H, value=r_on)

    @property
    def in_features(self) -> int:
        return self.input_size + 1

    def initial_state(self, batch_size: int):
        return self.zeros(batch_size), self.zeros(batch_size)

    def time_gate(self, time):
        """k (B, H) for step times `time` (B, 1)."""
        xp = mg.get_array_module(time.data)
        a = time - self.shift                                           # (B, H)
        wraps = mg.tensor(xp.floor(a.data / self.tau.data))      # constant: mod's kinks
        phi = (a - self.tau * wraps) / self.tau
        ratio = phi / self.r_on
        half = (phi.data < 0.5 * self.r_on.data)
        open_ = (phi.data < self.r_on.data)
        closed = self.leak * phi if self.training and self.leak else 0.0
        return mg.where(half, 2 * ratio, mg.where(open_, 2 - 2 * ratio, closed))

    def forward(self, x_t, state):
        check_input(self, x_t)
        n = self.input_size
        x, time = x_t[:, :n], x_t[:, n:]
        h, c = state
        gates = x @ self.weight_ih.T + self.bias + h @ self.weight_hh.T
        a_i, a_f, a_g, a_o = mg.split(gates, 4, axis=1)
        c_new = mg.sigmoid(a_f) * c + mg.sigmoid(a_i) * mg.tanh(a_g)
        h_new = mg.sigmoid(a_o) * mg.tanh(c_new)
        k = self.time_gate(time)
        c = k * c_new + (1 - k) * c
        h = k * h_new + (1 - k) * h
        return h, (h, c)

    def extra_repr(self):
        return f"{self.input_size} (+1 time), {self.hidden_size}, leak={self.leak}"


