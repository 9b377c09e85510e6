"""The generative demos of issue 20 (pixel_digits, embeddings): each quick mode runs end to end in
a few seconds and learns (it beats a baseline fitted on the same data), and the pieces the
figures rest on agree with references written here: hand counts, plain loops, NumPy's
eigendecomposition."""
import json
import math

import numpy as np
import pytest

import minigrad as mg

pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")
pytest.importorskip("sklearn")


def common(tmp_path, plots=False):
    return ["--quiet", "--out", str(tmp_path / "out")] + ([] if plots else ["--no-plots"])


# ----------------------------------------------------------------------------- pixel_digits

def test_pixel_digits_learns_and_draws(tmp_path):
    from demos import pixel_digits
    res = pixel_digits.main(common(tmp_path, plots=True) + [
        "--epochs", "5", "--hidden", "64", "--per-class", "2", "--completions", "3"])
    # better than the unconditional independent-pixel model and far better than uniform
    assert res["pixel_lstm_bits"] < res["independent_bits"] < res["uniform_bits"] == 2.0
    assert res["bits_last"] < 0.8 * res["bits_first"]
    assert res["completion_prefix_kept"]
    for name in ("samples.png", "completions.png", "loss.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["pixel_lstm_bits"] == res["pixel_lstm_bits"]


def test_independent_pixels_against_hand_counts():
    from demos.pixel_digits import CLASSES, PIXELS, independent_pixels
    rng = np.random.default_rng(0)
    xa, ya = rng.integers(0, 3, (40, PIXELS)), rng.integers(0, CLASSES, 40)
    xb, yb = rng.integers(0, 3, (7, PIXELS)), rng.integers(0, CLASSES, 7)
    got = independent_pixels((xa, ya), (xb, yb), 3)
    cond, marg = [], []
    for x, y in zip(xb, yb):
        for j in range(PIXELS):
            same = xa[ya == y, j]
            cond.append(-math.log2((np.sum(same == x[j]) + 1) / (len(same) + 3)))
            marg.append(-math.log2((np.sum(xa[:, j] == x[j]) + 1) / (len(xa) + 3)))
    assert got["independent_class_bits"] == pytest.approx(np.mean(cond), rel=1e-12)
    assert got["independent_bits"] == pytest.approx(np.mean(marg), rel=1e-12)


def test_pixel_step_agrees_with_the_whole_sequence():
    """The step the decoders drive gives the same log-probabilities as the teacher-forced
    forward pass, pixel by pixel, so the sampler draws from the model that was scored."""
    from demos.pixel_digits import PIXELS, PixelLSTM
    model = PixelLSTM(levels=3, hidden=8, embed=4, rng=np.random.default_rng(1))
    rng = np.random.default_rng(2)
    images, labels = rng.integers(0, 3, (5, PIXELS)), rng.integers(0, 10, 5)
    with mg.no_grad():
        whole = mg.log_softmax(model(images, labels), axis=-1).numpy()  # (64, B, L + 2)
        state, token = model.start(labels), np.full(5, model.bos)
        for t in range(PIXELS):
            logp, state = model.step(token, state)
            np.testing.assert_allclose(logp.numpy(), whole[t], rtol=1e-4, atol=1e-5)
            token = images[:, t]


def test_pixel_generation_keeps_the_prefix_and_the_levels():
    from demos.pixel_digits import PIXELS, PixelLSTM, generate
    model = PixelLSTM(levels=4, hidden=8, embed=4, rng=np.random.default_rng(0))
    prefix = np.random.default_rng(3).integers(0, 4, (3, 20))
    out = generate(model, np.array([1, 5, 7]), seed=4, prefix=prefix)
    assert out.shape == (3, PIXELS) and out.min() >= 0 and out.max() <= 3
    np.testing.assert_array_equal(out[:, :20], prefix)
    np.testing.assert_array_equal(generate(model, np.array([1, 5, 7]), seed=4, prefix=prefix),
                                  out)  # the seed fixes the draws
    assert not (generate(model, np.array([1, 5, 7]), seed=5, prefix=prefix) == out).all()


# ----------------------------------------------------------------------------- embeddings

def test_embeddings_learn(tmp_path):
    from demos import embeddings
    res = embeddings.main(common(tmp_path, plots=True) + [
        "--words", "30000", "--val-words", "5000", "--lm-steps", "300", "--w2v-steps", "200",
        "--hidden", "64", "--embed", "32", "--min-count", "3", "--lr", "0.01"])
    ppl = res["perplexity"]
    # both next-word models beat the unigram model counted on the same training words
    assert ppl["time_delay"] < 0.9 * ppl["unigram"] and ppl["lstm"] < 0.9 * ppl["unigram"]
    assert ppl["unigram"] < res["vocab"]
    for kind in ("cbow", "skipgram"):
        assert res[f"{kind}_heldout_loss"] < 0.8 * res["w2v_chance"]
    assert set(res["neighbours"]["skipgram"]) >= {"king", "love"}
    assert (tmp_path / "out" / "projection.png").stat().st_size > 0


def test_word_windows_against_loops():
    from demos.embeddings import cbow_windows, skipgram_pairs, windows
    ids = np.arange(10) * 3
    ctx, nxt = windows(ids, 3)
    assert [tuple(c) + (y,) for c, y in zip(ctx, nxt)] == \
        [tuple(ids[t - 3:t + 1]) for t in range(3, 10)]
    keep = np.ones(100)
    rng = np.random.default_rng(0)
    centers, contexts = skipgram_pairs(ids, 2, keep, rng)
    want = sorted((ids[i], ids[j]) for i in range(10) for j in range(10) if 0 < abs(i - j) <= 2)
    assert sorted(zip(centers, contexts)) == want
    around, middle = cbow_windows(ids, 2, keep, rng)
    for c, m in zip(around, middle):
        i = list(ids).index(m)
        assert list(c) == [ids[i - 2], ids[i - 1], ids[i + 1], ids[i + 2]]
    assert len(middle) == 6


def test_negative_sampling_loss_against_numpy():
    from demos.embeddings import NegativeSampling
    model = NegativeSampling(7, 3, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    model.outer.weight.data[...] = rng.standard_normal((7, 3))
    model.inner.weight.data[...] = rng.standard_normal((7, 3))
    inner, outer = model.inner.weight.numpy(), model.outer.weight.numpy()

    def log_sigmoid(z):
        return -np.log1p(np.exp(-z))

    x, y, noise = np.array([1, 4]), np.array([2, 0]), np.array([[3, 5], [6, 6]])
    u = inner[x]
    want = -(log_sigmoid((u * outer[y]).sum(1))
             + log_sigmoid(-np.einsum("bd,bkd->bk", u, outer[noise])).sum(1)).mean()
    assert float(model(x, y, noise).item()) == pytest.approx(want, rel=1e-5)
    ctx = np.array([[1, 2, 3], [4, 5, 6]])  # CBOW: the mean of the context's vectors
    u = inner[ctx].mean(axis=1)
    want = -(log_sigmoid((u * outer[y]).sum(1))
             + log_sigmoid(-np.einsum("bd,bkd->bk", u, outer[noise])).sum(1)).mean()
    assert float(model(ctx, y, noise).item()) == pytest.approx(want, rel=1e-5)


def test_time_delay_scores_the_words_the_lstm_scores():
    """Loss (t, b) of the time-delay model is that of data[t + 1, b] given the n words before
    it in stream b: checked against one call per word."""
    from demos.embeddings import TimeDelayLM, time_delay_losses
    model = TimeDelayLM(9, 2, 3, 5, np.random.default_rng(0))
    data = np.random.default_rng(1).integers(0, 9, (6, 3))
    got = time_delay_losses(model, data, 2)
    assert got.shape == (5, 3) and np.isnan(got[0]).all()
    with mg.no_grad():
        for t in range(1, 5):
            for b in range(3):
                logits = model(data[t - 1:t + 1, b][None]).numpy()[0].astype(np.float64)
                want = np.log(np.exp(logits).sum()) - logits[data[t + 1, b]]
                assert got[t, b] == pytest.approx(want, rel=1e-4)


def test_pca_and_neighbours_against_references():
    from demos.embeddings import neighbours, pca_2d
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1])
    centred = x - x.mean(axis=0)
    values, vecs = np.linalg.eigh(np.cov(centred.T))
    top = vecs[:, np.argsort(values)[::-1][:2]]
    got = pca_2d(x)
    for k in range(2):  # the same projection up to the sign of each direction
        np.testing.assert_allclose(np.abs(got[:, k]), np.abs(centred @ top[:, k]), rtol=1e-8)
    vocab = ["a", "b", "c", "d"]
    v = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    assert neighbours(v, vocab, ["a", "zzz"], k=3) == {"a": ["b", "c", "d"]}
