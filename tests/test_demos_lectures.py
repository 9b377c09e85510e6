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
