"""The bad-call table: wrong calls to the public API, each a clear error naming the function.

Each row is (id, expected exception type, a fragment the message must contain, make) where
`make()` builds fresh objects and returns (the wrong call, the Tensors/arrays it must leave
untouched). The test asserts the exception type (ValueError/TypeError or a subclass), that the
message names the function, and that every watched array is bit-for-bit unchanged afterwards.
New public API joins the table with rows of its own.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

import minigrad as mg
from minigrad.optim.guard import SkipNonFinite

NAN, INF = math.nan, math.inf


def _param(seed=0):
    p = mg.nn.Parameter(np.random.default_rng(seed).standard_normal(3))
    p.grad = mg.tensor(np.random.default_rng(seed + 1).standard_normal(3))
    return p


def _optimizer_rows():
    """Every optimizer and hyperparameter, with values of the wrong kind or out of range."""
    hyper = {  # name -> (class, {argument: [bad values]})
        "SGD": (mg.optim.SGD, {"lr": ["0.1", INF, NAN, -1.0, None, True],
                               "momentum": [INF, NAN, -0.5, "0.9"],
                               "weight_decay": [INF, -1.0, "0"],
                               "nesterov": ["yes", 1]}),
        "Adam": (mg.optim.Adam, {"lr": ["0.1", INF, NAN, -1.0],
                                 "betas": [(0.9,), (1.0, 0.999), (0.9, NAN), "ab", (0.9, 1.5),
                                           (-0.1, 0.9), 0.9],
                                 "eps": [NAN, -1.0, INF],
                                 "weight_decay": [NAN, -1.0]}),
        "AdamW": (mg.optim.AdamW, {"lr": [INF, -1.0], "betas": [(0.9, 1.0)],
                                   "weight_decay": [INF]}),
        "RMSprop": (mg.optim.RMSprop, {"lr": [NAN, "1"], "alpha": [1.5, NAN, -0.1, "0.9"],
                                       "momentum": [INF, -1.0], "eps": [-1.0]}),
        "Adagrad": (mg.optim.Adagrad, {"lr": [INF, -0.1], "eps": [NAN],
                                       "weight_decay": [-2.0]}),
    }
    rows = []
    for name, (cls, args) in hyper.items():
        for arg, values in args.items():
            for v in values:
                def make(cls=cls, arg=arg, v=v):
                    p = _param()
                    kw = {"lr": 0.1} if arg != "lr" else {}
                    return (lambda: cls([p], **kw, **{arg: v})), [p, p.grad]
                expected = (TypeError, ValueError)
                rows.append((f"{name}-{arg}={v!r}", expected, name, make))

    def nesterov_without_momentum():
        p = _param()
        return (lambda: mg.optim.SGD([p], lr=0.1, nesterov=True)), [p]
    rows.append(("SGD-nesterov-no-momentum", ValueError, "SGD", nesterov_without_momentum))

    def param_group_bad_lr():
        p = _param()
        return (lambda: mg.optim.SGD([{"params": [p], "lr": INF}], lr=0.1)), [p]
    rows.append(("SGD-group-lr-inf", ValueError, "SGD", param_group_bad_lr))
    for bad, label in ((lambda p: p, "single-tensor"), (lambda p: [], "empty"),
                       (lambda p: [1.0], "non-tensor"), (lambda p: [p, p], "duplicate"),
                       (lambda p: [mg.tensor(np.array([1, 2]))], "int-tensor")):
        def make(bad=bad):
            p = _param()
            return (lambda: mg.optim.Adam(bad(p))), [p]
        rows.append((f"Adam-params-{label}", (TypeError, ValueError), "Adam", make))
    return rows


def _schedule_rows():
    cases = [
        ("StepLR", lambda o: mg.optim.StepLR(o, step_size=0)),
        ("StepLR", lambda o: mg.optim.StepLR(o, step_size=1.5)),
        ("StepLR", lambda o: mg.optim.StepLR(o, step_size="3")),
        ("StepLR", lambda o: mg.optim.StepLR(o, step_size=True)),
        ("StepLR", lambda o: mg.optim.StepLR(o, step_size=2, gamma=INF)),
        ("StepLR", lambda o: mg.optim.StepLR(o, step_size=2, gamma=NAN)),
        ("StepLR", lambda o: mg.optim.StepLR(o, step_size=2, gamma=0.0)),
        ("StepLR", lambda o: mg.optim.StepLR(o, step_size=2, gamma="0.1")),
        ("ExponentialLR", lambda o: mg.optim.ExponentialLR(o, gamma=INF)),
        ("ExponentialLR", lambda o: mg.optim.ExponentialLR(o, gamma=-0.5)),
        ("ExponentialLR", lambda o: mg.optim.ExponentialLR(o, gamma=None)),
        ("CosineAnnealingLR", lambda o: mg.optim.CosineAnnealingLR(o, T_max=0)),
        ("CosineAnnealingLR", lambda o: mg.optim.CosineAnnealingLR(o, T_max=2.5)),
        ("CosineAnnealingLR", lambda o: mg.optim.CosineAnnealingLR(o, T_max=5, eta_min=-1.0)),
        ("CosineAnnealingLR", lambda o: mg.optim.CosineAnnealingLR(o, T_max=5, eta_min=NAN)),
        ("CosineAnnealingLR", lambda o: mg.optim.CosineAnnealingLR(o, T_max=5, eta_min=INF)),
        ("StepLR", lambda o: mg.optim.StepLR("not an optimizer", step_size=2)),
        ("SkipNonFinite", lambda o: SkipNonFinite(o, max_consecutive=0)),
        ("SkipNonFinite", lambda o: SkipNonFinite(o, max_consecutive=1.5)),
        ("SkipNonFinite", lambda o: SkipNonFinite(o, max_consecutive="2")),
        ("SkipNonFinite", lambda o: SkipNonFinite("sgd")),
    ]
    rows = []
    for i, (name, call) in enumerate(cases):
        def make(call=call):
            p = _param()
            opt = mg.optim.SGD([p], lr=0.1)
            return (lambda: call(opt)), [p]
        rows.append((f"{name}-{i}", (TypeError, ValueError), name, make))
    return rows


def _clip_rows():
    cases = [
        ("clip_grad_norm_", dict(max_norm=NAN)), ("clip_grad_norm_", dict(max_norm=INF)),
        ("clip_grad_norm_", dict(max_norm=-1.0)), ("clip_grad_norm_", dict(max_norm="1")),
        ("clip_grad_norm_", dict(max_norm=1.0, norm_type=0)),
        ("clip_grad_norm_", dict(max_norm=1.0, norm_type=-2.0)),
        ("clip_grad_norm_", dict(max_norm=1.0, norm_type=NAN)),
        ("clip_grad_norm_", dict(max_norm=1.0, norm_type="inf")),
        ("clip_grad_norm_", dict(max_norm=1.0, error_if_nonfinite="yes")),
        ("clip_grad_value_", dict(clip_value=NAN)), ("clip_grad_value_", dict(clip_value=INF)),
        ("clip_grad_value_", dict(clip_value=-1.0)), ("clip_grad_value_", dict(clip_value="1")),
    ]
    rows = []
    for i, (name, kw) in enumerate(cases):
        def make(name=name, kw=kw):
            p = _param()
            fn = getattr(mg.nn.utils, name)
            return (lambda: fn([p], **kw)), [p, p.grad]
        rows.append((f"{name}-{i}", (TypeError, ValueError), name, make))

    def not_tensors():
        p = _param()
        return (lambda: mg.nn.utils.clip_grad_norm_([p, "w"], 1.0)), [p, p.grad]
    rows.append(("clip_grad_norm_-non-tensor", TypeError, "clip_grad_norm_", not_tensors))
    return rows


def _init_rows():
    init = mg.nn.init
    cases = [
        ("init.normal_", lambda t: init.normal_(t, std=NAN)),
        ("init.normal_", lambda t: init.normal_(t, std=INF)),
        ("init.normal_", lambda t: init.normal_(t, std=-1.0)),
        ("init.normal_", lambda t: init.normal_(t, std="1")),
        ("init.normal_", lambda t: init.normal_(t, mean=NAN)),
        ("init.uniform_", lambda t: init.uniform_(t, a=NAN)),
        ("init.uniform_", lambda t: init.uniform_(t, b=INF)),
        ("init.uniform_", lambda t: init.uniform_(t, a=2.0, b=1.0)),
        ("init.constant_", lambda t: init.constant_(t, "1")),
        ("init.constant_", lambda t: init.constant_(t, INF)),
        ("init.xavier_uniform_", lambda t: init.xavier_uniform_(t, gain=NAN)),
        ("init.xavier_normal_", lambda t: init.xavier_normal_(t, gain="2")),
        ("init.orthogonal_", lambda t: init.orthogonal_(t, gain=INF)),
        ("init.xavier_uniform_", lambda t: init.xavier_uniform_(t[0])),
        ("init.orthogonal_", lambda t: init.orthogonal_(t[0])),
        ("init.normal_", lambda t: init.normal_(t.numpy())),
    ]
    rows = []
    for i, (name, call) in enumerate(cases):
        def make(call=call):
            t = mg.tensor(np.random.default_rng(3).standard_normal((3, 4)))
            return (lambda: call(t)), [t]
        rows.append((f"{name}-{i}", (TypeError, ValueError), name, make))
    return rows


def _layer_rows():
    cases = [
        ("Linear", lambda: mg.nn.Linear(0, 2)), ("Linear", lambda: mg.nn.Linear(2.5, 2)),
        ("Linear", lambda: mg.nn.Linear("3", 2)), ("Linear", lambda: mg.nn.Linear(True, 2)),
        ("Linear", lambda: mg.nn.Linear(2, -3)),
        ("Linear", lambda: mg.nn.Linear(2, 3, dtype="int32")),
        ("Linear", lambda: mg.nn.Linear(2, 3, dtype="complex64")),
        ("Linear", lambda: mg.nn.Linear(2, 3, dtype="notadtype")),
        ("Linear", lambda: mg.nn.Linear(2, 3, rng=0)("abc")),
        ("Linear", lambda: mg.nn.Linear(2, 3, rng=0)(mg.ones(4, 5))),
        ("Embedding", lambda: mg.nn.Embedding(0, 3)),
        ("Embedding", lambda: mg.nn.Embedding(3, -1)),
        ("Embedding", lambda: mg.nn.Embedding(3.0, 2)),
        ("Dropout", lambda: mg.nn.Dropout(1.0)), ("Dropout", lambda: mg.nn.Dropout(NAN)),
        ("Dropout", lambda: mg.nn.Dropout("0.5")), ("Dropout", lambda: mg.nn.Dropout(-0.1)),
    ]
    return [(f"{name}-{i}", (TypeError, ValueError), name, lambda call=call: (call, []))
            for i, (name, call) in enumerate(cases)]


def _file_rows(tmp):
    deep = []
    for _ in range(200):
        deep = [deep]
    cyclic = [1, 2]
    cyclic.append(cyclic)
    cyclic_dict = {"a": {}}
    cyclic_dict["a"]["back"] = cyclic_dict
    cases = [
        ("mg.save", lambda: mg.save({"w": 1}, os.path.join(tmp, "missing", "ckpt.npz")),
         ValueError),
        ("mg.save", lambda: mg.save({"w": 1}, tmp), ValueError),
        ("mg.save", lambda: mg.save({"w": 1}, 42), TypeError),
        ("mg.save", lambda: mg.save({"w": 1}, ""), ValueError),
        ("mg.save", lambda: mg.save({"w": {1, 2}}, os.path.join(tmp, "a.npz")), TypeError),
        ("mg.save", lambda: mg.save(cyclic, os.path.join(tmp, "b.npz")), ValueError),
        ("mg.save", lambda: mg.save(cyclic_dict, os.path.join(tmp, "c.npz")), ValueError),
        ("mg.save", lambda: mg.save(deep, os.path.join(tmp, "d.npz")), ValueError),
        ("mg.save", lambda: mg.save({(1, 2): 3}, os.path.join(tmp, "e.npz")), TypeError),
        ("mg.save", lambda: mg.save({"o": np.array([None])}, os.path.join(tmp, "f.npz")),
         TypeError),
        ("mg.save", lambda: mg.save({"s": np.str_("x")}, os.path.join(tmp, "g.npz")), TypeError),
        ("mg.load", lambda: mg.load(None), TypeError),
        ("mg.load", lambda: mg.load(tmp), ValueError),
    ]
    return [(f"{name}-{i}", exc, name, lambda call=call: (call, []))
            for i, (name, call, exc) in enumerate(cases)]


TABLE = _optimizer_rows() + _schedule_rows() + _clip_rows() + _init_rows() + _layer_rows()


def _check_row(exc, fragment, make):
    call, watched = make()
    before = [np.array(w.numpy() if isinstance(w, mg.Tensor) else w, copy=True) for w in watched]
    with pytest.raises(exc) as info:
        call()
    assert isinstance(info.value, (TypeError, ValueError))
    assert fragment in str(info.value), f"message does not name {fragment!r}: {info.value}"
    for w, b in zip(watched, before):
        now = w.numpy() if isinstance(w, mg.Tensor) else w
        assert np.array_equal(now, b, equal_nan=True), "the failed call changed its argument"


@pytest.mark.parametrize("row", TABLE, ids=[r[0] for r in TABLE])
def test_bad_call(row):
    _, exc, fragment, make = row
    _check_row(exc, fragment, make)


def test_bad_file_calls(tmp_path):
    rows = _file_rows(str(tmp_path))
    for _, exc, fragment, make in rows:
        _check_row(exc, fragment, make)
    assert os.listdir(tmp_path) == [], "a refused save left a file behind"


def test_table_size():
    # the table covers every optimizer, schedule, clipping function, initialiser and layer
    assert len(TABLE) >= 120


def _gradcheck_rows():
    from minigrad.testing import gradcheck

    def x():
        return mg.tensor(np.array([0.3, -0.2]), requires_grad=True)
    cases = [
        lambda t: gradcheck(mg.tanh, [t], n_directions=0),
        lambda t: gradcheck(mg.tanh, [t], n_directions=1.5),
        lambda t: gradcheck(mg.tanh, [t], eps=0.0),
        lambda t: gradcheck(mg.tanh, [t], eps=NAN),
        lambda t: gradcheck(mg.tanh, [t], atol=-1.0),
        lambda t: gradcheck(mg.tanh, [t], rtol=INF),
        lambda t: gradcheck(mg.tanh, [t], mode="all"),
        lambda t: gradcheck("tanh", [t]),
        lambda t: gradcheck(mg.tanh, t),
        lambda t: gradcheck(mg.tanh, [mg.tensor(np.array([0.3]))]),
        lambda t: gradcheck(mg.tanh, [mg.tensor(np.array([0.3], np.float32),
                                                requires_grad=True)]),
    ]
    return [(f"gradcheck-{i}", (TypeError, ValueError), "gradcheck",
             lambda call=call: (lambda t=x(): call(t), []))
            for i, call in enumerate(cases)]


GRADCHECK_ROWS = _gradcheck_rows()


@pytest.mark.parametrize("row", GRADCHECK_ROWS, ids=[r[0] for r in GRADCHECK_ROWS])
def test_bad_gradcheck_call(row):
    _, exc, fragment, make = row
    _check_row(exc, fragment, make)


def _cell_rows():
    import rnn
    makers = {
        "RNNCell": lambda: rnn.RNNCell(3, 4, rng=0),
        "LSTMCell": lambda: rnn.LSTMCell(3, 4, rng=0),
        "LSTMCell-unfused": lambda: rnn.LSTMCell(3, 4, fused=False, rng=0),
        "LSTMCell-NIG": lambda: rnn.LSTMCell(3, 4, variant="NIG", rng=0),
        "GRUCell": lambda: rnn.GRUCell(3, 4, rng=0),
        "GRUCell-reset-after": lambda: rnn.GRUCell(3, 4, reset_after=True, rng=0),
        "MUT1Cell": lambda: rnn.MUT1Cell(3, 4, rng=0),
        "MUT2Cell": lambda: rnn.MUT2Cell(3, 4, rng=0),
        "MUT3Cell": lambda: rnn.MUT3Cell(3, 4, rng=0),
        "PhasedLSTMCell": lambda: rnn.PhasedLSTMCell(3, 4, rng=0),
        "DeepTransitionCell": lambda: rnn.DeepTransitionCell(3, 4, depth=2, rng=0),
    }
    calls = {  # (x_t, state) from (cell, its input width I, a good state for B = 2)
        "rank-1": lambda c, I, s: (mg.randn(I), s),
        "rank-3": lambda c, I, s: (mg.randn(1, 2, I), s),
        "width": lambda c, I, s: (mg.randn(2, I + 1), s),
        "state-None": lambda c, I, s: (mg.randn(2, I), None),
        "string": lambda c, I, s: ("abc", s),
        "complex": lambda c, I, s: (mg.tensor(np.ones((2, I), np.complex64)), s),
        "batch-mismatch": lambda c, I, s: (mg.randn(3, I), s),
        "numpy-array": lambda c, I, s: (np.ones((2, I), np.float32), s),
        "float64-into-float32": lambda c, I, s: (mg.randn(2, I, dtype="float64"), s),
        "state-not-tensors": lambda c, I, s: (mg.randn(2, I), [1.0, 2.0]),
    }
    rows = []
    for name, make_cell in makers.items():
        cls = name.split("-")[0]
        for what, call in calls.items():
            def make(make_cell=make_cell, call=call):
                cell = make_cell()
                x, s = call(cell, cell.in_features, cell.initial_state(2))
                return (lambda: cell(x, s)), list(cell.parameters())
            rows.append((f"{name}-{what}", (TypeError, ValueError), cls, make))
    ctor = [
        ("LSTMCell", lambda: rnn.LSTMCell(3, 4, forget_bias=NAN)),
        ("LSTMCell", lambda: rnn.LSTMCell(3, 4, forget_bias=INF)),
        ("LSTMCell", lambda: rnn.LSTMCell(0, 4)), ("LSTMCell", lambda: rnn.LSTMCell(3, 2.5)),
        ("LSTMCell", lambda: rnn.LSTMCell(3, 4, dtype="complex64")),
        ("GRUCell", lambda: rnn.GRUCell(3, 4, dtype="int64")),
        ("RNNCell", lambda: rnn.RNNCell(3, 4, dtype="nonsense")),
        ("PhasedLSTMCell", lambda: rnn.PhasedLSTMCell(3, 4, leak=NAN)),
        ("PhasedLSTMCell", lambda: rnn.PhasedLSTMCell(3, 4, r_on=0.0)),
        ("PhasedLSTMCell", lambda: rnn.PhasedLSTMCell(3, 4, forget_bias=INF)),
        ("unroll", lambda: rnn.unroll("notacell", mg.randn(2, 1, 3))),
    ]
    rows += [(f"{name}-ctor-{i}", (TypeError, ValueError), name, lambda call=call: (call, []))
             for i, (name, call) in enumerate(ctor)]
    return rows


CELL_ROWS = _cell_rows()


@pytest.mark.parametrize("row", CELL_ROWS, ids=[r[0] for r in CELL_ROWS])
def test_bad_cell_call(row):
    _, exc, fragment, make = row
    _check_row(exc, fragment, make)


def _sequence_rows():
    import rnn
    logits = mg.randn(3, 2, 5)
    targets = np.zeros((3, 2), np.int64)
    x = mg.randn(3, 2, 4)
    bad_lengths = [[2.5, 1], [NAN, 1], [INF, 1], [4, 1], [-1, 1], [1], [1, 1, 1], "ab", [[1, 2]],
                   [True, 1], [None, 1]]
    fns = {
        "mask_from_lengths": lambda L: rnn.mask_from_lengths(L, 3),
        "sequence_cross_entropy": lambda L: rnn.sequence_cross_entropy(logits, targets, L),
        "reverse_sequences": lambda L: rnn.reverse_sequences(x, L),
        "unroll": lambda L: rnn.unroll(rnn.GRUCell(4, 3, rng=0), x, lengths=L),
    }
    rows = []
    for name, fn in fns.items():
        for i, L in enumerate(bad_lengths):
            if name == "mask_from_lengths" and L in ([1], [1, 1, 1]):
                continue  # the mask's batch size is the lengths' own
            # the message names the function, or the cell whose unroll it is
            fragment = "GRUCell" if name == "unroll" else name
            rows.append((f"{name}-lengths-{i}", (TypeError, ValueError), fragment,
                         lambda fn=fn, L=L: ((lambda: fn(L)), [logits, x])))
    return rows


SEQUENCE_ROWS = _sequence_rows()


@pytest.mark.parametrize("row", SEQUENCE_ROWS, ids=[r[0] for r in SEQUENCE_ROWS])
def test_bad_lengths(row):
    _, exc, fragment, make = row
    _check_row(exc, fragment, make)


# --- the core: every mg.* function, Tensor operators and methods, creators, memory, modes --------

def _x(*shape, seed=0, dtype=np.float64, grad=True):
    """A fresh float tensor of `shape` (default (2, 3)) drawn from `seed`."""
    data = np.random.default_rng(seed).standard_normal(shape or (2, 3)).astype(dtype)
    return mg.tensor(data, requires_grad=grad and dtype in (np.float32, np.float64))


def _c(*shape):
    """A complex tensor (for the ops that order values or give a real result)."""
    return mg.tensor(np.ones(shape or (2, 3)) * (1 + 2j))


# Values that are not tensors, arrays or numbers, given where a tensor is expected.
NOT_TENSORS = {"str": "abc", "None": None, "dict": {"a": 1}, "set": {1, 2}, "bytes": b"xy",
               "object": object()}

# public function -> (its call on one tensor argument, the name its errors start with)
UNARY = {
    "exp": (mg.exp, "Exp"), "log": (mg.log, "Log"), "sqrt": (mg.sqrt, "Sqrt"),
    "abs": (mg.abs, "Abs"), "neg": (mg.neg, "Neg"), "tanh": (mg.tanh, "Tanh"),
    "sigmoid": (mg.sigmoid, "Sigmoid"), "relu": (mg.relu, "Relu"),
    "leaky_relu": (mg.leaky_relu, "LeakyRelu"), "elu": (mg.elu, "Elu"),
    "softplus": (mg.softplus, "Softplus"), "sum": (mg.sum, "Sum"), "mean": (mg.mean, "Mean"),
    "max": (mg.max, "Max"), "min": (mg.min, "Min"), "logsumexp": (mg.logsumexp, "LogSumExp"),
    "var": (mg.var, "var"), "softmax": (mg.softmax, "Softmax"),
    "log_softmax": (mg.log_softmax, "LogSoftmax"), "argmax": (mg.argmax, "argmax"),
    "argmin": (mg.argmin, "argmin"), "topk": (lambda x: mg.topk(x, 1), "topk"),
    "squeeze": (mg.squeeze, "squeeze"), "expand_dims": (lambda x: mg.expand_dims(x, 0),
                                                         "expand_dims"),
    "swapaxes": (lambda x: mg.swapaxes(x, 0, 1), "swapaxes"),
    "reshape": (lambda x: mg.reshape(x, -1), "reshape"),
    "transpose": (mg.transpose, "transpose"), "flip": (mg.flip, "flip"),
    "roll": (lambda x: mg.roll(x, 1), "roll"), "pad": (lambda x: mg.pad(x, 1), "pad"),
    "broadcast_to": (lambda x: mg.broadcast_to(x, (2, 3)), "broadcast_to"),
    "unstack": (mg.unstack, "unstack"), "split": (lambda x: mg.split(x, 1), "split"),
    "clip": (lambda x: mg.clip(x, 0.0, 1.0), "Clip"),
    "astype": (lambda x: mg.astype(x, "float32"), "astype"),
    "getitem": (lambda x: mg.getitem(x, 0), "getitem"),
    "normalize": (mg.normalize, "normalize"), "dropout": (lambda x: mg.dropout(x, 0.5), "Dropout"),
    "zeros_like": (mg.zeros_like, "zeros_like"), "ones_like": (mg.ones_like, "ones_like"),
    "take": (lambda x: mg.take(x, [0]), "take"), "gather": (lambda x: mg.gather(x, [0], 0),
                                                            "gather"),
    "embedding": (lambda x: mg.embedding(x, [0]), "embedding"),
    "cross_entropy": (lambda x: mg.cross_entropy(x, [0]), "cross_entropy"),
    "stack": (lambda x: mg.stack([x]), "stack"), "concat": (lambda x: mg.concat([x]), "concat"),
    "stack-tuple": (lambda x: mg.stack((x, x)), "stack"),
    "memory.summary": (lambda x: mg.memory.summary(x), "memory.summary"),
}

# public function -> (its call on (x, y), the name its errors start with); y is the bad one
BINARY = {
    "add": (mg.add, "Add"), "sub": (mg.sub, "Sub"), "mul": (mg.mul, "Mul"),
    "div": (mg.div, "Div"), "pow": (mg.pow, "Pow"), "matmul": (mg.matmul, "MatMul"),
    "maximum": (mg.maximum, "Maximum"), "minimum": (mg.minimum, "Minimum"),
    "where-x": (lambda x, y: mg.where(x > 0, y, x), "where"),
    "where-cond": (lambda x, y: mg.where(y, x, x), "where"),
    "mse_loss": (mg.mse_loss, "mse_loss"),
    "binary_cross_entropy_with_logits": (mg.binary_cross_entropy_with_logits,
                                         "binary_cross_entropy_with_logits"),
    "cosine_similarity": (mg.cosine_similarity, "cosine_similarity"),
    "concat-item": (lambda x, y: mg.concat([x, y]), "concat"),
    "stack-item": (lambda x, y: mg.stack([x, y]), "stack"),
    "__add__": (lambda x, y: x + y, "Add"), "__radd__": (lambda x, y: y + x, "Add"),
    "__sub__": (lambda x, y: x - y, "Sub"), "__rsub__": (lambda x, y: y - x, "Sub"),
    "__mul__": (lambda x, y: x * y, "Mul"), "__truediv__": (lambda x, y: x / y, "Div"),
    "__pow__": (lambda x, y: x ** y, "Pow"), "__matmul__": (lambda x, y: x @ y, "MatMul"),
    "__lt__": (lambda x, y: x < y, "comparison"), "__eq__": (lambda x, y: x == y, "comparison"),
}


def _not_tensor_rows():
    rows = []
    for name, (fn, says) in UNARY.items():
        for kind, bad in NOT_TENSORS.items():
            rows.append((f"{name}({kind})", (TypeError, ValueError), says,
                         lambda fn=fn, bad=bad: ((lambda: fn(bad)), [])))
    for name, (fn, says) in BINARY.items():
        for kind, bad in NOT_TENSORS.items():
            if name == "__eq__" and kind in ("None", "dict", "set", "object"):
                continue  # x == object() is False everywhere, as in NumPy (not an error)
            def make(fn=fn, bad=bad):
                x = _x()
                return (lambda: fn(x, bad)), [x]
            rows.append((f"{name}(x, {kind})", (TypeError, ValueError), says, make))
    return rows


def _string_array_rows():
    """NumPy string arrays reach the ops as arrays: refused by the op, named, never a crash in
    the engine's error path (NumPy's ufunc errors cannot be rebuilt from a message)."""
    rows = []
    strings = np.array([["a", "b", "c"]] * 2)
    for name, (fn, says) in BINARY.items():
        if name.startswith(("where-cond", "__eq__", "__lt__")):
            continue
        def make(fn=fn):
            x = _x()
            return (lambda: fn(x, strings)), [x]
        rows.append((f"{name}(x, str-array)", TypeError, says, make))
    for name in ("exp", "tanh", "sum", "softmax", "relu", "sigmoid", "log", "abs", "max",
                 "reshape", "transpose", "flip", "roll", "pad", "broadcast_to", "unstack",
                 "split", "astype", "getitem", "take", "squeeze", "expand_dims", "swapaxes",
                 "var", "argmax", "topk", "stack", "concat", "zeros_like", "gather"):
        fn, says = UNARY[name]
        rows.append((f"{name}(str-array)", TypeError, says,
                     lambda fn=fn: ((lambda: fn(strings)), [])))
    return rows


def _complex_rows():
    """Complex inputs where they make no sense: every op that orders values or gives a real
    loss (see minigrad.ops)."""
    cases = {
        "relu": (mg.relu, "Relu"), "abs": (mg.abs, "Abs"),
        "leaky_relu": (mg.leaky_relu, "LeakyRelu"), "elu": (mg.elu, "Elu"),
        "softplus": (mg.softplus, "Softplus"), "clip": (lambda c: mg.clip(c, 0.0, 1.0), "Clip"),
        "maximum": (lambda c: mg.maximum(c, 0.0), "Maximum"),
        "minimum": (lambda c: mg.minimum(c, 0.0), "Minimum"),
        "max": (mg.max, "Max"), "min": (mg.min, "Min"), "logsumexp": (mg.logsumexp, "LogSumExp"),
        "softmax": (mg.softmax, "Softmax"), "log_softmax": (mg.log_softmax, "LogSoftmax"),
        "cross_entropy": (lambda c: mg.cross_entropy(c, np.array([0, 1])), "CrossEntropy"),
        "bce": (lambda c: mg.binary_cross_entropy_with_logits(c, np.ones((2, 3))),
                "BCEWithLogits"),
        "mse_loss": (lambda c: mg.mse_loss(c, c), "mse_loss"),
        "normalize": (mg.normalize, "normalize"),
        "cosine_similarity": (lambda c: mg.cosine_similarity(c, c), "cosine_similarity"),
        "argmax": (mg.argmax, "argmax"), "argmin": (mg.argmin, "argmin"),
        "topk": (lambda c: mg.topk(c, 1), "topk"), "var": (mg.var, "var"),
        "Tensor.relu": (lambda c: c.relu(), "Relu"), "Tensor.max": (lambda c: c.max(), "Max"),
        "Tensor.softmax": (lambda c: c.softmax(), "Softmax"),
    }
    rows = []
    for name, (fn, says) in cases.items():
        def make(fn=fn):
            c = _c()
            return (lambda: fn(c)), [c]
        rows.append((f"{name}(complex)", TypeError, says, make))
    return rows


def _argument_rows():
    """A good tensor x (2, 3) with a bad axis, index, dtype, size, shape, flag or value."""
    t = _x
    cases = [  # (function named, exception, call on fresh x of shape (2, 3))
        # axes of reductions
        ("Sum", ValueError, lambda x: mg.sum(x, axis=2)),
        ("Sum", TypeError, lambda x: mg.sum(x, axis="0")),
        ("Sum", TypeError, lambda x: mg.sum(x, axis=1.5)),
        ("Sum", TypeError, lambda x: mg.sum(x, axis=True)),
        ("Sum", ValueError, lambda x: mg.sum(x, axis=(0, 0))),
        ("Sum", ValueError, lambda x: mg.sum(x, axis=[0, 5])),
        ("Sum", TypeError, lambda x: mg.sum(x, axis={0: 1})),
        ("sum", TypeError, lambda x: mg.sum(x, keepdims="yes")),
        ("sum", TypeError, lambda x: x.sum(keepdims=None)),
        ("Mean", ValueError, lambda x: mg.mean(x, axis=-3)),
        ("Mean", TypeError, lambda x: x.mean(axis="1")),
        ("mean", TypeError, lambda x: mg.mean(x, keepdims=1)),
        ("Max", ValueError, lambda x: mg.max(x, axis=2)),
        ("Max", TypeError, lambda x: x.max(axis=0.0)),
        ("max", TypeError, lambda x: mg.max(x, keepdims="no")),
        ("Max", ValueError, lambda x: mg.max(x[:0])),
        ("Min", ValueError, lambda x: mg.min(x, axis=(1, 1))),
        ("min", TypeError, lambda x: x.min(keepdims=[])),
        ("LogSumExp", ValueError, lambda x: mg.logsumexp(x, axis=4)),
        ("LogSumExp", TypeError, lambda x: x.logsumexp(axis="a")),
        ("logsumexp", TypeError, lambda x: mg.logsumexp(x, keepdims="y")),
        ("var", ValueError, lambda x: mg.var(x, axis=5)),
        ("var", TypeError, lambda x: mg.var(x, axis=0.5)),
        ("var", ValueError, lambda x: mg.var(x, ddof=-1)),
        ("var", TypeError, lambda x: mg.var(x, ddof=1.5)),
        ("var", ValueError, lambda x: x.var(ddof=6)),
        ("Softmax", ValueError, lambda x: mg.softmax(x, axis=2)),
        ("Softmax", TypeError, lambda x: mg.softmax(x, axis="a")),
        ("Softmax", TypeError, lambda x: x.softmax(axis=1.0)),
        ("LogSoftmax", ValueError, lambda x: mg.log_softmax(x, axis=-3)),
        ("LogSoftmax", TypeError, lambda x: x.log_softmax(axis=None.__class__)),
        # elementwise parameters
        ("leaky_relu", TypeError, lambda x: mg.leaky_relu(x, slope="0.1")),
        ("leaky_relu", ValueError, lambda x: mg.leaky_relu(x, slope=NAN)),
        ("leaky_relu", TypeError, lambda x: x.leaky_relu(slope=None)),
        ("elu", ValueError, lambda x: mg.elu(x, alpha=INF)),
        ("elu", TypeError, lambda x: x.elu(alpha=[1.0])),
        ("clip", TypeError, lambda x: mg.clip(x, "0")),
        ("clip", ValueError, lambda x: mg.clip(x, 2.0, 1.0)),
        ("clip", ValueError, lambda x: mg.clip(x, NAN)),
        ("clip", ValueError, lambda x: mg.clip(x, None, NAN)),
        ("clip", ValueError, lambda x: x.clip()),
        ("clip", TypeError, lambda x: x.clip(lo=None, hi="1")),
        ("astype", TypeError, lambda x: mg.astype(x, "str")),
        ("astype", TypeError, lambda x: mg.astype(x, "notadtype")),
        ("astype", TypeError, lambda x: mg.astype(x, None)),
        ("astype", TypeError, lambda x: x.astype(object)),
        ("astype", TypeError, lambda x: x.astype("datetime64[s]")),
        ("astype", TypeError, lambda x: x.astype("S3")),
        # binary shapes
        ("Add", ValueError, lambda x: x + t(4)),
        ("Sub", ValueError, lambda x: mg.sub(x, t(3, 2))),
        ("Mul", ValueError, lambda x: x * t(4, 1, 5)),
        ("Div", ValueError, lambda x: x / np.ones(2)),
        ("Pow", ValueError, lambda x: x ** t(2)),
        ("Maximum", ValueError, lambda x: mg.maximum(x, t(5))),
        ("Minimum", ValueError, lambda x: x.minimum(t(3, 3))),
        ("Where", ValueError, lambda x: mg.where(np.ones(2, bool), x, x)),
        ("MatMul", ValueError, lambda x: x @ t(2, 3)),
        ("MatMul", ValueError, lambda x: x @ mg.tensor(2.0)),
        ("MatMul", TypeError, lambda x: x @ 2.0),
        ("MatMul", TypeError, lambda x: 2.0 @ x),
        ("MatMul", TypeError, lambda x: x.matmul(True)),
        ("MatMul", ValueError, lambda x: mg.matmul(x, np.ones((4, 2)))),
        ("Pow", TypeError, lambda x: x.pow("2")),
        # shape functions
        ("Reshape", ValueError, lambda x: mg.reshape(x, 4, 4)),
        ("reshape", TypeError, lambda x: x.reshape("a")),
        ("reshape", TypeError, lambda x: x.reshape(2.0, 3)),
        ("reshape", ValueError, lambda x: mg.reshape(x, (-2, -3))),
        ("Reshape", ValueError, lambda x: x.reshape(-1, -1)),
        ("Transpose", ValueError, lambda x: mg.transpose(x, 0, 5)),
        ("transpose", TypeError, lambda x: x.transpose("a", 0)),
        ("Transpose", ValueError, lambda x: x.transpose(0, 0)),
        ("Transpose", ValueError, lambda x: x.transpose(0, 1, 2)),
        ("swapaxes", ValueError, lambda x: mg.swapaxes(x, 0, 5)),
        ("swapaxes", TypeError, lambda x: x.swapaxes(0, "1")),
        ("swapaxes", TypeError, lambda x: mg.swapaxes(x, (0,), 1)),
        ("expand_dims", ValueError, lambda x: mg.expand_dims(x, 5)),
        ("expand_dims", TypeError, lambda x: x.expand_dims(1.0)),
        ("expand_dims", TypeError, lambda x: x.unsqueeze((0, 1))),
        ("squeeze", ValueError, lambda x: mg.squeeze(x, 0)),
        ("squeeze", ValueError, lambda x: x.squeeze(5)),
        ("squeeze", TypeError, lambda x: x.squeeze("a")),
        ("BroadcastTo", ValueError, lambda x: mg.broadcast_to(x, (3, 3))),
        ("broadcast_to", ValueError, lambda x: x.broadcast_to("ab")),
        ("broadcast_to", ValueError, lambda x: mg.broadcast_to(x, (2, -3))),
        ("broadcast_to", ValueError, lambda x: mg.broadcast_to(x, 2.5)),
        ("BroadcastTo", ValueError, lambda x: mg.broadcast_to(x, 3)),
        ("concat", TypeError, lambda x: mg.concat(x)),
        ("concat", TypeError, lambda x: mg.concat(x, axis=1)),
        ("Concat", ValueError, lambda x: mg.concat([])),
        ("Concat", TypeError, lambda x: mg.concat([x, x], axis=(0,))),
        ("Concat", ValueError, lambda x: mg.concat([x, x], axis=5)),
        ("Concat", ValueError, lambda x: mg.concat([x, t(3, 2)])),
        ("Concat", TypeError, lambda x: mg.concat([x, x], axis="0")),
        ("stack", TypeError, lambda x: mg.stack(x)),
        ("stack", TypeError, lambda x: mg.stack({"a": x})),
        ("Stack", ValueError, lambda x: mg.stack([])),
        ("Stack", ValueError, lambda x: mg.stack([x, t(3)])),
        ("Stack", ValueError, lambda x: mg.stack([x, x], axis=5)),
        ("Stack", TypeError, lambda x: mg.stack([x, x], axis=(1,))),
        ("Unstack", ValueError, lambda x: mg.unstack(x, axis=5)),
        ("Unstack", TypeError, lambda x: mg.unstack(x, axis=(0,))),
        ("Unstack", TypeError, lambda x: mg.unstack(x, axis="a")),
        ("Split", ValueError, lambda x: mg.split(x, 2, axis=2)),
        ("Split", ValueError, lambda x: x.split(1, axis=-3)),
        ("Split", TypeError, lambda x: mg.split(x, 1, axis=(0,))),
        ("split", ValueError, lambda x: mg.split(x, 0)),
        ("split", TypeError, lambda x: mg.split(x, "a")),
        ("split", TypeError, lambda x: mg.split(x, 1.5)),
        ("Split", ValueError, lambda x: mg.split(x, 4)),
        ("split", TypeError, lambda x: x.split(None)),
        ("Pad", ValueError, lambda x: mg.pad(x, -1)),
        ("Pad", ValueError, lambda x: mg.pad(x, ((1, 1),) * 3)),
        ("Pad", ValueError, lambda x: mg.pad(x, "a")),
        ("Pad", ValueError, lambda x: mg.pad(x, 1.5)),
        ("pad", TypeError, lambda x: mg.pad(x, 1, value="a")),
        ("pad", ValueError, lambda x: mg.pad(x, 1, value=NAN)),
        ("roll", TypeError, lambda x: mg.roll(x, 1.5)),
        ("Roll", ValueError, lambda x: x.roll(1, axis=5)),
        ("roll", TypeError, lambda x: mg.roll(x, "a")),
        ("roll", TypeError, lambda x: mg.roll(x, (1, None), axis=(0, 1))),
        ("Flip", ValueError, lambda x: mg.flip(x, axis=5)),
        ("Flip", TypeError, lambda x: x.flip(axis="a")),
        # indexing
        ("GetItem", IndexError, lambda x: x[5]),
        ("GetItem", IndexError, lambda x: x[:, 7]),
        ("GetItem", IndexError, lambda x: x[-3]),
        ("GetItem", IndexError, lambda x: x[0, 0, 0]),
        ("GetItem", IndexError, lambda x: x[np.array([9])]),
        ("GetItem", IndexError, lambda x: x[np.ones((3, 3), bool)]),
        ("GetItem", IndexError, lambda x: mg.getitem(x, [0, 2])),
        ("GetItem", TypeError, lambda x: x["a"]),
        ("GetItem", TypeError, lambda x: x[1.5]),
        ("GetItem", TypeError, lambda x: x[[0.5]]),
        ("GetItem", TypeError, lambda x: x[None, "a"]),
        ("GetItem", TypeError, lambda x: x[np.array([0.0])]),
        ("GetItem", TypeError, lambda x: x[{0: 1}]),
        ("GetItem", TypeError, lambda x: x[mg.tensor([0.5])]),
        ("Take", IndexError, lambda x: mg.take(x, [5])),
        ("Take", IndexError, lambda x: mg.take(x, [-3])),
        ("Take", TypeError, lambda x: mg.take(x, [0], axis=(0,))),
        ("Take", TypeError, lambda x: x.take([0], axis=[1])),
        ("Take", TypeError, lambda x: mg.take(x, [0.5])),
        ("take", TypeError, lambda x: mg.take(x, "a")),
        ("take", TypeError, lambda x: mg.take(x, None)),
        ("take", TypeError, lambda x: x.take(1.0)),
        ("Take", ValueError, lambda x: mg.take(x, [0], axis=2)),
        ("Take", TypeError, lambda x: mg.take(x, np.array([True]))),
        ("Embedding", ValueError, lambda x: mg.embedding(x, [-1])),
        ("Embedding", ValueError, lambda x: mg.embedding(x, np.array([[0, -2]]))),
        ("Embedding", IndexError, lambda x: mg.embedding(x, [2])),
        ("Embedding", TypeError, lambda x: mg.embedding(x, [0.5])),
        ("embedding", TypeError, lambda x: mg.embedding(x, None)),
        ("embedding", ValueError, lambda x: mg.embedding(x[0], [0])),
        ("embedding", ValueError, lambda x: mg.embedding(x.reshape(1, 2, 3), [0])),
        ("Gather", TypeError, lambda x: mg.gather(x, np.zeros((2, 1), np.int64), axis=(1,))),
        ("Gather", TypeError, lambda x: mg.gather(x, np.zeros((2, 1)), 1)),
        ("Gather", IndexError, lambda x: mg.gather(x, np.full((2, 1), 3), 1)),
        ("Gather", IndexError, lambda x: x.gather(np.full((2, 1), -4), 1)),
        ("Gather", ValueError, lambda x: mg.gather(x, np.zeros((2, 1), np.int64), axis=5)),
        ("gather", TypeError, lambda x: mg.gather(x, None, 1)),
        ("Gather", ValueError, lambda x: mg.gather(x, np.zeros((3, 1, 1), np.int64), 1)),
        # losses
        ("cross_entropy", ValueError, lambda x: mg.cross_entropy(x, [0, 3])),
        ("cross_entropy", IndexError, lambda x: mg.cross_entropy(x, np.array([-2, 1]))),
        ("cross_entropy", TypeError, lambda x: mg.cross_entropy(x, np.array([0.0, 1.0]))),
        ("cross_entropy", ValueError, lambda x: mg.cross_entropy(x, [0])),
        ("cross_entropy", ValueError, lambda x: mg.cross_entropy(x, [0, 1], reduction="avg")),
        ("cross_entropy", TypeError, lambda x: mg.cross_entropy(x, [0, 1], ignore_index=1.5)),
        ("cross_entropy", TypeError, lambda x: mg.cross_entropy(x, [0, 1], ignore_index="a")),
        ("cross_entropy", TypeError, lambda x: mg.cross_entropy(x, None)),
        ("cross_entropy", TypeError, lambda x: mg.cross_entropy(x, "ab")),
        ("cross_entropy", ValueError, lambda x: mg.cross_entropy(x[0, 0], [])),
        ("cross_entropy", TypeError, lambda x: mg.cross_entropy(x, [True, False])),
        ("binary_cross_entropy_with_logits", ValueError,
         lambda x: mg.binary_cross_entropy_with_logits(x, np.ones((2, 2)))),
        ("binary_cross_entropy_with_logits", ValueError,
         lambda x: mg.binary_cross_entropy_with_logits(x, x.detach(), reduction="max")),
        ("mse_loss", ValueError, lambda x: mg.mse_loss(x, t(3))),
        ("mse_loss", ValueError, lambda x: mg.mse_loss(x, x.detach(), reduction="max")),
        ("mse_loss", ValueError, lambda x: mg.mse_loss(x, np.ones((3, 2)))),
        ("dropout", ValueError, lambda x: mg.dropout(x, 1.0)),
        ("dropout", ValueError, lambda x: mg.dropout(x, NAN)),
        ("dropout", TypeError, lambda x: mg.dropout(x, "0.5")),
        ("dropout", ValueError, lambda x: mg.dropout(x, -0.1)),
        ("dropout", TypeError, lambda x: mg.dropout(x, 0.5, training="yes")),
        ("dropout", TypeError, lambda x: mg.dropout(x, 0.5, rng="seed")),
        ("dropout", TypeError, lambda x: mg.dropout(x, None)),
        ("normalize", ValueError, lambda x: mg.normalize(x, axis=5)),
        ("normalize", ValueError, lambda x: mg.normalize(x, p=0)),
        ("normalize", TypeError, lambda x: mg.normalize(x, p="2")),
        ("normalize", ValueError, lambda x: mg.normalize(x, eps=-1.0)),
        ("normalize", TypeError, lambda x: mg.normalize(x, axis="a")),
        ("cosine_similarity", ValueError, lambda x: mg.cosine_similarity(x, x, axis=5)),
        ("cosine_similarity", ValueError, lambda x: mg.cosine_similarity(x, x, eps=NAN)),
        ("cosine_similarity", TypeError, lambda x: mg.cosine_similarity(x, x, eps="1")),
        # non-differentiable
        ("argmax", ValueError, lambda x: mg.argmax(x, axis=5)),
        ("argmax", TypeError, lambda x: mg.argmax(x, axis=(0,))),
        ("argmax", TypeError, lambda x: x.argmax(axis="a")),
        ("argmax", TypeError, lambda x: mg.argmax(x, keepdims="y")),
        ("argmax", ValueError, lambda x: mg.argmax(x[:0])),
        ("argmin", ValueError, lambda x: mg.argmin(x, axis=-3)),
        ("argmin", TypeError, lambda x: x.argmin(axis=1.0)),
        ("topk", ValueError, lambda x: mg.topk(x, 0)),
        ("topk", ValueError, lambda x: mg.topk(x, 4)),
        ("topk", TypeError, lambda x: mg.topk(x, "1")),
        ("topk", TypeError, lambda x: mg.topk(x, 1.5)),
        ("topk", TypeError, lambda x: x.topk(1, axis=(1,))),
        ("topk", ValueError, lambda x: mg.topk(x, 1, axis=5)),
        ("topk", TypeError, lambda x: mg.topk(x, 1, largest="yes")),
        ("topk", TypeError, lambda x: mg.topk(x, True)),
    ]
    rows = []
    for i, (says, exc, call) in enumerate(cases):
        def make(call=call):
            x = _x()
            return (lambda: call(x)), [x]
        rows.append((f"{says}-{i}", exc, says, make))
    return rows


def _creator_rows():
    cases = [  # (function named, exception, call)
        ("tensor", TypeError, lambda: mg.tensor(None)),
        ("tensor", TypeError, lambda: mg.tensor("abc")),
        ("tensor", TypeError, lambda: mg.tensor(["a", "b"])),
        ("tensor", TypeError, lambda: mg.tensor([1.0, None])),
        ("tensor", TypeError, lambda: mg.tensor({"a": 1})),
        ("tensor", TypeError, lambda: mg.tensor({1, 2})),
        ("tensor", TypeError, lambda: mg.tensor(b"xy")),
        ("tensor", TypeError, lambda: mg.tensor(object())),
        ("tensor", ValueError, lambda: mg.tensor([[1, 2], [3]])),
        ("tensor", TypeError, lambda: mg.tensor(np.array(["a"]))),
        ("tensor", TypeError, lambda: mg.tensor(np.array([None]))),
        ("tensor", TypeError, lambda: mg.tensor(np.array([1, "a"], dtype=object))),
        ("tensor", TypeError, lambda: mg.tensor(np.array(["2020-01-01"], "datetime64[D]"))),
        ("tensor", TypeError, lambda: mg.tensor(np.str_("x"))),
        ("tensor", TypeError, lambda: mg.tensor(1.0, dtype="str")),
        ("tensor", TypeError, lambda: mg.tensor(1.0, dtype="notadtype")),
        ("tensor", TypeError, lambda: mg.tensor(np.ones(2), dtype=object)),
        ("tensor", ValueError, lambda: mg.tensor(["1.5x"], dtype="float32")),
        ("tensor", ValueError, lambda: mg.tensor(1.0, device="tpu")),
        ("tensor", TypeError, lambda: mg.tensor(1.0, device=3)),
        ("tensor", TypeError, lambda: mg.tensor([1, 2], requires_grad=True)),
        ("tensor", TypeError, lambda: mg.tensor(1.0, requires_grad="yes")),
        ("tensor", TypeError, lambda: mg.tensor(1.0, requires_grad=None)),
        ("tensor", TypeError, lambda: mg.tensor(1.0, name=3)),
        ("tensor", TypeError, lambda: mg.Tensor(None)),
        ("tensor", TypeError, lambda: mg.Tensor("abc")),
        ("zeros", ValueError, lambda: mg.zeros(-1)),
        ("zeros", ValueError, lambda: mg.zeros(2.5)),
        ("zeros", ValueError, lambda: mg.zeros("3")),
        ("zeros", ValueError, lambda: mg.zeros(None)),
        ("zeros", ValueError, lambda: mg.zeros(True)),
        ("zeros", TypeError, lambda: mg.zeros(2, dtype="str")),
        ("zeros", ValueError, lambda: mg.zeros(2, device="tpu")),
        ("zeros", TypeError, lambda: mg.zeros(2, requires_grad="yes")),
        ("ones", ValueError, lambda: mg.ones(2, -3)),
        ("ones", ValueError, lambda: mg.ones((2, 1.5))),
        ("ones", TypeError, lambda: mg.ones(2, dtype="U")),
        ("ones", TypeError, lambda: mg.ones(2, device=[])),
        ("full", TypeError, lambda: mg.full((2,), "a")),
        ("full", TypeError, lambda: mg.full((2,), None)),
        ("full", ValueError, lambda: mg.full("a", 1.0)),
        ("full", ValueError, lambda: mg.full((-2,), 1.0)),
        ("full", TypeError, lambda: mg.full((2,), 1.0, dtype="U")),
        ("full", ValueError, lambda: mg.full((2,), 300, dtype="int8")),
        ("zeros_like", TypeError, lambda: mg.zeros_like(_x(), dtype="str")),
        ("ones_like", TypeError, lambda: mg.ones_like(_x(), requires_grad="y")),
        ("arange", ValueError, lambda: mg.arange(0, 5, 0)),
        ("arange", TypeError, lambda: mg.arange("5")),
        ("arange", ValueError, lambda: mg.arange(NAN)),
        ("arange", ValueError, lambda: mg.arange(0, INF)),
        ("arange", TypeError, lambda: mg.arange(5, dtype="str")),
        ("arange", TypeError, lambda: mg.arange(None)),
        ("arange", ValueError, lambda: mg.arange(0, 1e300, 1e-300)),
        ("arange", ValueError, lambda: mg.arange(5, device="tpu")),
        ("randn", ValueError, lambda: mg.randn(-1)),
        ("randn", TypeError, lambda: mg.randn(2, rng="seed")),
        ("randn", TypeError, lambda: mg.randn(2, dtype="int32")),
        ("randn", ValueError, lambda: mg.randn(2.5)),
        ("randn", ValueError, lambda: mg.randn(2, device="tpu")),
        ("rand", ValueError, lambda: mg.rand(2.5)),
        ("rand", TypeError, lambda: mg.rand(2, rng=1.5)),
        ("rand", TypeError, lambda: mg.rand(2, dtype="bool")),
        ("one_hot", ValueError, lambda: mg.one_hot([0, 5], 3)),
        ("one_hot", ValueError, lambda: mg.one_hot([-1], 3)),
        ("one_hot", ValueError, lambda: mg.one_hot([0], 0)),
        ("one_hot", TypeError, lambda: mg.one_hot([0], "3")),
        ("one_hot", TypeError, lambda: mg.one_hot([0], 3.0)),
        ("one_hot", TypeError, lambda: mg.one_hot([0.5], 3)),
        ("one_hot", TypeError, lambda: mg.one_hot(None, 3)),
        ("one_hot", TypeError, lambda: mg.one_hot("ab", 3)),
        ("one_hot", TypeError, lambda: mg.one_hot([0], 3, dtype="str")),
        ("set_default_dtype", TypeError, lambda: mg.set_default_dtype("int32")),
        ("set_default_dtype", TypeError, lambda: mg.set_default_dtype("nonsense")),
        ("set_default_dtype", TypeError, lambda: mg.set_default_dtype(None)),
        ("set_default_dtype", TypeError, lambda: mg.set_default_dtype("complex64")),
    ]
    return [(f"{says}-{i}", exc, says, lambda call=call: (call, []))
            for i, (says, exc, call) in enumerate(cases)]


def _method_rows():
    """Tensor methods, in-place changes and autodiff entry points on a fresh x (2, 3)."""
    def no_grad_x():
        return _x(grad=False)
    cases = [  # (function named, exception, make x, call on x)
        ("to", ValueError, _x, lambda x: x.to("tpu")),
        ("to", TypeError, _x, lambda x: x.to(3)),
        ("item", ValueError, _x, lambda x: x.item()),
        ("len", TypeError, _x, lambda x: len(x[0, 0])),
        ("backward", ValueError, _x, lambda x: (x * 2).backward(np.ones(3))),
        ("backward", TypeError, _x, lambda x: (x * 2).backward("a")),
        ("backward", TypeError, _x, lambda x: (x * 2).backward({})),
        ("backward", TypeError, _x, lambda x: x.sum().backward(create_graph="yes")),
        ("backward", TypeError, _x, lambda x: x.sum().backward(retain_graph=1)),
        ("register_hook", TypeError, _x, lambda x: x.register_hook("f")),
        ("register_hook", TypeError, _x, lambda x: x.register_hook(None)),
        ("requires_grad_", TypeError, _x, lambda x: x.requires_grad_("yes")),
        ("requires_grad_", TypeError, no_grad_x, lambda x: x.requires_grad_(None)),
        ("__iadd__", TypeError, no_grad_x, lambda x: x.__iadd__("a")),
        ("__iadd__", ValueError, no_grad_x, lambda x: x.__iadd__(np.ones(4))),
        ("__isub__", TypeError, no_grad_x, lambda x: x.__isub__(None)),
        ("__imul__", TypeError, no_grad_x, lambda x: x.__imul__({})),
        ("__itruediv__", TypeError, no_grad_x, lambda x: x.__itruediv__("2")),
        ("__iadd__", TypeError, lambda: mg.tensor(np.arange(3)),
         lambda x: x.__iadd__(np.ones(3) / 2)),
        ("fill_", TypeError, no_grad_x, lambda x: x.fill_("a")),
        ("fill_", TypeError, no_grad_x, lambda x: x.fill_(None)),
        ("fill_", TypeError, no_grad_x, lambda x: x.fill_([1.0])),
        ("copy_", ValueError, no_grad_x, lambda x: x.copy_(mg.ones(3, 2))),
        ("copy_", TypeError, no_grad_x, lambda x: x.copy_("a")),
        ("copy_", TypeError, no_grad_x, lambda x: x.copy_(None)),
        ("add_", ValueError, no_grad_x, lambda x: x.add_(np.ones(5))),
        ("add_", TypeError, no_grad_x, lambda x: x.add_("a")),
        ("mul_", TypeError, no_grad_x, lambda x: x.mul_(None)),
        ("mul_", ValueError, no_grad_x, lambda x: x.mul_(mg.ones(2, 2))),
        ("__setitem__", IndexError, no_grad_x, lambda x: x.__setitem__(5, 1.0)),
        ("__setitem__", TypeError, no_grad_x, lambda x: x.__setitem__(0, "a")),
        ("__setitem__", TypeError, no_grad_x, lambda x: x.__setitem__(0, None)),
        ("__setitem__", ValueError, no_grad_x, lambda x: x.__setitem__(0, np.ones(4))),
        ("__setitem__", IndexError, no_grad_x, lambda x: x.__setitem__("a", 1.0)),
        ("bool", ValueError, _x, lambda x: bool(x)),
        ("grad", TypeError, _x, lambda x: mg.grad("a", [x])),
        ("grad", TypeError, _x, lambda x: mg.grad(x.sum(), ["x"])),
        ("grad", ValueError, _x, lambda x: mg.grad(x.sum(), [x.detach()])),
        ("grad", ValueError, _x, lambda x: mg.grad(x * 2, [x], grad_outputs=[np.ones(2)])),
        ("backward", TypeError, _x, lambda x: mg.backward(["a"])),
        ("checkpoint", TypeError, _x, lambda x: mg.checkpoint("f", x)),
        ("checkpoint", TypeError, _x, lambda x: mg.checkpoint(lambda a: "out", x)),
        ("memory.summary", TypeError, _x, lambda x: mg.memory.summary(x.numpy())),
        ("tag_scope", TypeError, _x, lambda x: mg.tag_scope(3, 1)),
        ("detect_anomaly", TypeError, _x, lambda x: mg.detect_anomaly(x)),
        ("no_grad", TypeError, _x, lambda x: mg.no_grad(x)),
        ("enable_grad", TypeError, _x, lambda x: mg.enable_grad(x)),
        ("is_grad_enabled", TypeError, _x, lambda x: mg.is_grad_enabled(x)),
        ("get_default_dtype", TypeError, _x, lambda x: mg.get_default_dtype(x)),
        ("manual_seed", TypeError, _x, lambda x: mg.manual_seed("a")),
        ("manual_seed", ValueError, _x, lambda x: mg.manual_seed(-1)),
        ("manual_seed", TypeError, _x, lambda x: mg.manual_seed(1.5)),
        ("register_device", ValueError, _x, lambda x: mg.register_device(3, list, np, id, id)),
        ("register_device", TypeError, _x, lambda x: mg.register_device("d", [], np, id, id)),
        ("register_device", TypeError, _x, lambda x: mg.register_device("d", list, np, 1, id)),
        ("vjp", TypeError, _x, lambda x: mg.vjp("f", [x])),
        ("vjp", TypeError, _x, lambda x: mg.vjp(mg.tanh, ["a"])),
        ("vjp", TypeError, _x, lambda x: mg.vjp(mg.tanh, [x], v="a")),
        ("jvp", TypeError, _x, lambda x: mg.jvp("f", [x], [x])),
        ("jvp", ValueError, _x, lambda x: mg.jvp(mg.tanh, [x], [mg.ones(4)])),
        ("jvp", ValueError, _x, lambda x: mg.jvp(mg.tanh, [x], [])),
        ("jacobian", TypeError, _x, lambda x: mg.jacobian(None, [x])),
        ("jacobian", TypeError, _x, lambda x: mg.jacobian(mg.tanh, [x.numpy()])),
        ("jacobian", TypeError, _x, lambda x: mg.jacobian(mg.tanh, [mg.tensor([1, 2])])),
        ("jacobian", TypeError, _x, lambda x: mg.jacobian(mg.tanh, 3.0)),
        ("hessian", ValueError, _x, lambda x: mg.hessian(mg.tanh, [x])),
        ("hessian", TypeError, _x, lambda x: mg.hessian(mg.sum, "x")),
        ("hessian", TypeError, _x, lambda x: mg.hessian(3, [x])),
        ("hvp", ValueError, _x, lambda x: mg.hvp(mg.sum, [x], [mg.ones(2)])),
        ("hvp", ValueError, _x, lambda x: mg.hvp(mg.sum, [x], [])),
        ("hvp", ValueError, _x, lambda x: mg.hvp(mg.tanh, [x], [x])),
        ("set_num_threads", TypeError, _x, lambda x: mg.set_num_threads("2")),
        ("set_num_threads", ValueError, _x, lambda x: mg.set_num_threads(0)),
        ("set_num_threads", TypeError, _x, lambda x: mg.set_num_threads(1.5)),
        ("set_num_threads", TypeError, _x, lambda x: mg.set_num_threads(True)),
        ("get_num_threads", TypeError, _x, lambda x: mg.get_num_threads(2)),
    ]
    rows = []
    for i, (says, exc, make_x, call) in enumerate(cases):
        def make(make_x=make_x, call=call):
            x = make_x()
            return (lambda: call(x)), [x]
        rows.append((f"{says}-m{i}", exc, says, make))
    return rows


CORE_ROWS = (_not_tensor_rows() + _string_array_rows() + _complex_rows() + _argument_rows()
             + _creator_rows() + _method_rows())


@pytest.mark.parametrize("row", CORE_ROWS, ids=[r[0] for r in CORE_ROWS])
def test_bad_core_call(row):
    _, exc, fragment, make = row
    with np.errstate(all="ignore"):
        _check_row(exc, fragment, make)


def test_core_table_covers_every_public_function():
    # every public function of mg has rows of its own (as a table key or the name a row's
    # message must contain); classes are covered by their methods' rows, and
    # get_array_module accepts anything by contract (a non-array is a host scalar: NumPy)
    ids = [r[0] for r in CORE_ROWS]
    files = {r[2].removeprefix("mg.") for r in _file_rows("unused")}  # mg.save, mg.load
    named = {r[2] for r in CORE_ROWS} | set(UNARY) | set(BINARY) | files
    for name in mg.__all__:
        obj = getattr(mg, name)
        if not callable(obj) or isinstance(obj, type) or name == "get_array_module":
            continue
        assert name in named or any(i.startswith(name) for i in ids), name
    assert len(CORE_ROWS) >= 800


def test_index_errors_are_value_errors_and_iteration_still_ends():
    x = _x(3, 2)
    rows = list(x)  # Python iteration stops at the IndexError __getitem__ raises past the end
    assert len(rows) == 3 and all(np.array_equal(r.numpy(), x.numpy()[k])
                                  for k, r in enumerate(rows))
    with pytest.raises(mg.checks.IndexRangeError) as info:
        x[3]
    assert isinstance(info.value, IndexError) and isinstance(info.value, ValueError)
    with pytest.raises(mg.checks.IndexTypeError) as info:
        x["a"]
    assert isinstance(info.value, IndexError) and isinstance(info.value, TypeError)


def test_complex_still_flows_through_the_holomorphic_ops():
    # the ops that keep complex inputs compute what NumPy computes
    z = np.array([1 + 2j, -0.5 + 0.25j])
    c = mg.tensor(z)
    out = (mg.exp(c) * c + mg.tanh(c) / (c ** 2)).sum()
    np.testing.assert_allclose(out.item(), (np.exp(z) * z + np.tanh(z) / z ** 2).sum())
