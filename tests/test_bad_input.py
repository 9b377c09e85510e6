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
