"""The lectures' experiments as demos (issue 20): each quick mode runs end to end in seconds and
learns (beats chance or a baseline measured in the same run); the generated data are checked
against their definitions."""
import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")


def common(tmp_path, plots=False):
    return ["--quiet", "--out", str(tmp_path / "out")] + ([] if plots else ["--no-plots"])


def test_phased_lstm_learns(tmp_path):
    from demos import phased_lstm
    res = phased_lstm.main(common(tmp_path, plots=True) + ["--quick"])
    acc = res["accuracy"]
    assert set(acc) == {"phased_lstm/regular", "lstm/regular", "phased_lstm/irregular",
                        "lstm/irregular"}
    # balanced classes: chance is 50%; a quick run already beats it on regular sampling
    assert max(acc["phased_lstm/regular"], acc["lstm/regular"]) > 0.6
    assert res["lstm/regular/loss_last"] < res["lstm/regular/loss_first"]
    for name in ("learning_curves.png", "open_phases.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["accuracy"] == acc


def test_phased_lstm_waves_follow_their_labels():
    from demos.phased_lstm import BAND, waves
    rng = np.random.default_rng(3)
    for sampling in ("regular", "irregular"):
        values, times, labels = waves(rng, 400, 200, 40.0, sampling)
        assert values.shape == times.shape == (200, 400, 1) and labels.mean() == 0.5
        assert np.all(np.diff(times[:, :, 0], axis=0) >= 0)  # times ascend in every sequence
        # recover each wave's period from its samples by a least-squares fit over a period grid
        grid = np.linspace(2.0, 12.0, 2001)
        for j in range(0, 400, 40):
            t, v = times[:, j, 0].astype(float), values[:, j, 0].astype(float)
            errs = []
            for p in grid:
                basis = np.stack([np.sin(2 * np.pi * t / p), np.cos(2 * np.pi * t / p)], 1)
                coef = np.linalg.lstsq(basis, v, rcond=None)[0]
                errs.append(np.sum((basis @ coef - v) ** 2))
            period = grid[int(np.argmin(errs))]
            assert (BAND[0] - 0.01 <= period <= BAND[1] + 0.01) == bool(labels[j])


def test_cell_bakeoff_learns(tmp_path):
    from demos import cell_bakeoff
    res = cell_bakeoff.main(common(tmp_path, plots=True) + ["--quick"])
    table = res["table"]
    assert len(table) == 2 * len(cell_bakeoff.QUICK_CELLS)
    # chance: 25% of closing tags (4 tags); about 1% of exact 2-digit sums
    assert max(table[f"xml/{c}"]["mean"] for c in cell_bakeoff.QUICK_CELLS) > 0.5
    assert max(table[f"arithmetic/{c}"]["mean"] for c in cell_bakeoff.QUICK_CELLS) > 0.1
    for run in res["runs"].values():
        assert run["loss_last"] < run["loss_first"]
    assert (tmp_path / "out" / "bakeoff.png").stat().st_size > 0
    assert "| GRU | jozefowicz |" in (tmp_path / "out" / "table.md").read_text()


def test_cell_bakeoff_data_are_exact():
    from demos.cell_bakeoff import (ARITH_VOCAB, IGNORE, TAGS, XML_VOCAB, arithmetic, xml)
    rng = np.random.default_rng(1)
    tokens, targets = arithmetic(rng, 200, digits=2, distractors=2)
    for j in range(200):
        text = "".join(ARITH_VOCAB[k] for k in tokens[:, j])
        left, right = text.split("=")
        a, b = (int("".join(ch for ch in part if ch.isdigit())) for part in left.split("+"))
        answer = [d for d in targets[:, j] if d != IGNORE]
        assert int("".join(map(str, answer))) == a + b and len(answer) == 3
        assert set(right) == {"_"}  # nothing after '=' gives the answer away
    tokens, targets = xml(rng, 200)
    for j in range(200):
        stack = []  # an independent reading of the nesting: a plain stack of open tags
        for tok, want in zip(tokens[:, j], targets[:, j]):
            ch = XML_VOCAB[tok]
            if ch in TAGS:
                stack.append(TAGS.index(ch))
            if ch == ")":
                assert want == stack.pop()
            else:
                assert want == IGNORE
        assert len(stack) <= 4


def test_activity_learns(tmp_path):
    from demos import activity
    res = activity.main(common(tmp_path, plots=True) + ["--quick"])
    assert set(res["accuracy"]) == {"none", "L2", "early stopping"}
    for method, row in res["accuracy"].items():
        assert row["clean"]["mean"] > 0.4, method  # chance is 25% (10 test series per class)
        assert set(row) == set(activity.NOISES)
    assert (tmp_path / "out" / "accuracy.png").stat().st_size > 0
    assert "| early stopping |" in (tmp_path / "out" / "table.md").read_text()


def test_activity_data_are_the_shipped_files():
    from demos import activity
    x, names = activity.read_ts(activity.DATA / "BasicMotions_TRAIN.ts")
    assert x.shape == (40, 6, 100)
    assert sorted(set(names)) == ["Badminton", "Running", "Standing", "Walking"]
    assert all((names == n).sum() == 10 for n in set(names))
    # the first value of the file, read by hand from its first data line
    lines = (activity.DATA / "BasicMotions_TRAIN.ts").read_text().splitlines()
    first = lines[[ln.strip().lower() for ln in lines].index("@data") + 1]
    assert x[0, 0, 0] == np.float32(first.split(",")[0])
    assert first.rsplit(":", 1)[1] == names[0]
    (xt, yt), (xv, yv), (xs, ys), classes = activity.load(val_per_class=2, seed=0)
    assert xt.shape == (100, 32, 6) and xv.shape == (100, 8, 6) and xs.shape == (100, 40, 6)
    assert np.bincount(yv).tolist() == [2, 2, 2, 2] and np.bincount(ys).tolist() == [10] * 4
    np.testing.assert_allclose(xt.mean(axis=(0, 1)), 0, atol=1e-4)  # standardised on train
    np.testing.assert_allclose(xt.std(axis=(0, 1)), 1, atol=1e-3)


def test_activity_noise_is_what_it_says():
    from demos.activity import augment, corrupt
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 50, 6)).astype(np.float32)
    noisy = corrupt(x, "gauss", 2.0, rng)
    assert abs(float((noisy - x).std()) - 2.0) < 0.05
    held = corrupt(x, "drop", 0.5, rng)
    for j in range(50):  # every step is a copy of itself or of the step before: a held reading
        for t in range(1, 100):
            assert np.array_equal(held[t, j], x[t, j]) or np.array_equal(held[t, j],
                                                                         held[t - 1, j])
    changed = np.mean([not np.array_equal(held[t, j], x[t, j])
                       for t in range(100) for j in range(50)])
    assert 0.4 < changed < 0.55  # about half dropped (a drop that repeats the value is unseen)
    np.testing.assert_array_equal(corrupt(x, "jitter", 0.0, rng), x)
    assert augment(x, rng).shape == x.shape
