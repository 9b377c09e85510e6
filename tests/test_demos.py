"""Smoke tests: every demo runs end to end with tiny settings and learns at all (its loss falls,
its accuracy beats chance). Nothing here times anything; the full-size figures are in
docs/demos.md."""
import json
import math
import pathlib

import numpy as np
import pytest

import minigrad as mg

pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")


def common(tmp_path, plots=False):
    """Quiet, into tmp_path; figures only where a test checks them (matplotlib is slow)."""
    return ["--quiet", "--out", str(tmp_path / "out")] + ([] if plots else ["--no-plots"])


def test_binary_addition(tmp_path):
    from demos import binary_addition
    res = binary_addition.main(common(tmp_path, plots=True) + [
        "--steps", "300", "--test-pairs", "200", "--widths", "8", "16", "--mlp-hidden", "16"])
    assert res["rnn_loss_last"] < 0.8 * res["rnn_loss_first"]
    assert res["mlp_loss_last"] < res["mlp_loss_first"]
    # chance of a fully right 9-bit sum is 1/512
    assert res["accuracy"][8] > 0.05 and res["rnn_heldout8"] > 0.05
    assert res["mlp_takes_9_bits"] is False and "(1, 18)" in res["mlp_9_bit_error"]
    assert (tmp_path / "out" / "loss.png").stat().st_size > 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["accuracy"]["8"] == \
        res["accuracy"][8]


def test_binary_addition_data_is_exact():
    from demos.binary_addition import addition_batch, random_ints
    rng = np.random.default_rng(0)
    a, b = random_ints(rng, 20, 100), random_ints(rng, 20, 100)
    x, y = addition_batch(a, b, 100)
    weights = [1 << t for t in range(101)]  # read the bits back as Python ints
    for j in range(20):
        assert sum(int(x[t, j, 0]) * weights[t] for t in range(101)) == a[j]
        assert sum(int(y[t, j]) * weights[t] for t in range(101)) == a[j] + b[j]


def test_char_rnn_learns_and_resumes(tmp_path):
    from demos import char_rnn
    ckpt = str(tmp_path / "model.npz")
    small = common(tmp_path) + ["--chars", "40000", "--hidden", "32", "--embed", "8",
                                "--batch", "8", "--bptt", "16", "--sample", "40",
                                "--val-chars", "3000", "--lr", "0.01"]
    res = char_rnn.main(small + ["--steps", "60", "--save", ckpt])
    assert res["train_loss_last"] < res["train_loss_first"]
    assert res["val_nats"] < math.log(80)  # better than uniform over the 80 characters
    assert res["val_bits"] == pytest.approx(res["val_nats"] / math.log(2))
    for temp in (0.5, 1.0):
        assert res["samples"][temp].startswith("ROMEO.\n")
        assert len(res["samples"][temp]) == len("ROMEO.\n") + 40
    # the checkpoint gives back the same model: the same held-out loss, and training resumes
    again = char_rnn.main(small + ["--steps", "0", "--load", ckpt])
    assert again["val_nats"] == res["val_nats"] and again["steps"] == 60
    more = char_rnn.main(small + ["--steps", "5", "--load", ckpt])
    assert more["steps"] == 65
    # the held-out figure is on whole plays the model never trained on
    assert res["heldout_plays"] == ["julius_caesar", "much_ado"] and res["heldout_chars"] > 0
    # the BLAS thread choice is printed and kept with the results
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["blas_threads"] == res["blas_threads"] == 1


def test_char_rnn_holds_out_whole_plays():
    from demos.char_rnn import PLAYS, load_text, split_plays
    text = load_text()
    plays = split_plays(text)
    assert list(plays) == list(PLAYS)  # in the order of the file, every one found
    assert "".join(plays.values()) == text  # a partition: nothing lost, nothing doubled
    for key, title in PLAYS.items():
        assert plays[key].startswith(title + "\n\nby William Shakespeare")
        assert plays[key].count("by William Shakespeare") == 1


def test_char_rnn_eval_scores_a_file_with_a_saved_model(tmp_path):
    from demos import char_rnn
    ckpt = str(tmp_path / "model.npz")
    small = common(tmp_path) + ["--chars", "20000", "--hidden", "16", "--embed", "8",
                                "--batch", "4", "--bptt", "16", "--sample", "5"]
    char_rnn.main(small + ["--steps", "30", "--save", ckpt, "--val-chars", "500"])
    text = "ROMEO.\nO, she doth teach the torches to burn bright!\n"
    (tmp_path / "t.txt").write_text(text)
    res = char_rnn.main(common(tmp_path) + ["--hidden", "16", "--embed", "8", "--load", ckpt,
                                            "--eval", str(tmp_path / "t.txt")])
    # reference: the same model read one character at a time, its log-softmax summed by NumPy
    ckpt_data = mg.load(ckpt)
    vocab = ckpt_data["vocab"]
    model = char_rnn.CharLM(len(vocab), 8, 16, np.random.default_rng(0))
    model.load_state_dict(ckpt_data["model"])
    ids = [vocab.index(c) for c in text]
    state, nll = None, 0.0
    with mg.no_grad():
        for a, b in zip(ids[:-1], ids[1:]):
            logits, state = model(np.array([[a]]), state)
            z = logits.numpy()[0, 0].astype(np.float64)
            nll -= z[b] - (np.log(np.exp(z - z.max()).sum()) + z.max())
    assert res["eval_chars"] == len(text) - 1
    assert res["eval_nats"] == pytest.approx(nll / (len(text) - 1), rel=1e-4)
    assert res["eval_bits"] == pytest.approx(res["eval_nats"] / math.log(2))
    # a character the model has no probability for is refused, by name
    (tmp_path / "bad.txt").write_text("caf\u00e9")
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        char_rnn.main(common(tmp_path) + ["--hidden", "16", "--embed", "8", "--load", ckpt,
                                          "--eval", str(tmp_path / "bad.txt")])
    with pytest.raises(SystemExit):  # --eval without a model to score with
        char_rnn.main(common(tmp_path) + ["--eval", str(tmp_path / "t.txt")])


def test_graph_tour_writes_results_and_names_its_module(tmp_path, capsys):
    import shutil
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed")
    from demos import graph_tour
    with pytest.raises(SystemExit):
        graph_tour.main(["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m demos.graph_tour")
    res = graph_tour.main(["--quiet", "--out", str(tmp_path), "--steps", "2", "--long", "4"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["blas_threads"] == 1 and saved["steps"] == 2
    assert saved["backward_nodes"] == res["backward_nodes"] > 0
    assert all((tmp_path / pathlib.Path(p).name).exists() for p in saved["files"])


def test_char_rnn_bigram_entropy():
    from demos.char_rnn import bigram_entropy
    ids = np.array([0, 1, 0, 1, 0, 2, 0, 1, 0])
    # hand count: after 0 comes 1 (3 times) or 2 (once); after 1 or 2 always 0
    p0 = 4 / 8  # share of pairs that start with 0
    expect = p0 * -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert bigram_entropy(ids, 3) == pytest.approx(expect, rel=1e-12)


def test_sequential_digits(tmp_path):
    from demos import sequential_digits
    res = sequential_digits.main(common(tmp_path) + ["--steps", "40", "--hidden", "16",
                                                     "--no-baselines"])
    assert res["loss_last"] < res["loss_first"]
    assert res["test_accuracy"] > 0.3  # chance is 0.1


def test_vanishing_gradients(tmp_path):
    from demos import vanishing_gradients
    res = vanishing_gradients.main(common(tmp_path) + [
        "--T", "30", "--back", "10", "--pulse-steps", "12", "--hidden", "8", "--batch", "4"])
    linear = res["pulse"]["linear"]
    # h_t = w^t for a linear recurrence fed one unit pulse: the memory after 11 steps is w^11
    for w in (0.9, 1.0, 1.1):
        assert linear[w] == pytest.approx(w ** 11, rel=1e-12)
        assert res["pulse"]["relu"][w] == pytest.approx(w ** 11, rel=1e-12)  # pulse stays > 0
        assert res["pulse"]["tanh"][w] < linear[w]  # |tanh(a)| < |a|: tanh forgets faster
    for radius, r in res["linear"].items():
        assert r["predicted"] == pytest.approx(radius, rel=1e-9)
        assert r["measured"] == pytest.approx(radius, rel=0.1)
    for name, by_radius in res["gradients"].items():
        assert all(np.isfinite(v) and v >= 0 for v in by_radius.values()), name


def test_vanishing_gradients_figures_show_zeros_instead_of_flooring_them(tmp_path):
    from demos import vanishing_gradients as vg
    plt = pytest.importorskip("matplotlib.pyplot")
    fig, ax = plt.subplots()
    # a value that turned exactly 0 for good ends its line there and is marked at that step
    assert vg._log_line(ax, [1.0, 1e-3, 0.0, 0.0], "a", "C0") == (2, "C0", None)
    line = ax.get_lines()[-1]
    assert list(line.get_xdata()) == [0, 1] and min(line.get_ydata()) == 1e-3  # nothing floored
    assert vg._log_line(ax, [1.0, 0.0, 1e-3], "b", "C1") is None  # a gap, not an end
    assert vg._log_line(ax, [0.0, 0.0], "c", "C2") == (0, "C2", "c")  # no line: the mark is named
    plt.close(fig)
    # the round-off level of h' for sigmoid: one ulp of the fixed point, 0 where h' is exactly 0
    levels = vg.pulse_roundoff(mg.sigmoid, 1.0, 5)
    assert levels[0] == np.spacing(0.5) and np.all(levels > 0)
    assert np.all(vg.pulse_roundoff(lambda a: a, 1.0, 5) == 0)
    res = vg.main(["--quiet", "--out", str(tmp_path / "out"), "--T", "20", "--back", "5",
                   "--pulse-steps", "30", "--hidden", "4", "--batch", "2"])
    for name in ("pulse_memory", "linear_rate", "gradient_norms", "saturation"):
        assert (tmp_path / "out" / f"{name}.png").stat().st_size > 0
    assert res["pulse"]["sigmoid"][1.0] == 0.0  # what the triangle marks: exactly 0 by step 30


def test_char_rnn_speaker_lines():
    from demos.char_rnn import speaker_lines
    text = "BRUTUS.\nO Cassius.\n\nFIRST CITIZEN.\nAy.\n"
    mask = speaker_lines(text)
    marked = "".join(c for c, m in zip(text, mask) if m)
    assert marked == "BRUTUS.\nFIRST CITIZEN.\n"  # "O Cassius." is speech, not a name line


def test_dates_learns(tmp_path):
    from demos import dates
    res = dates.main(common(tmp_path, plots=True) + ["--quick"])
    for name in ("attention", "no_attention"):
        assert res[name]["loss_last"] < 0.9 * res[name]["loss_first"]
        assert res[name]["char_accuracy"] > 0.15  # chance: 1 in 11 characters
    for fig in ("attention.png", "accuracy_by_length.png", "loss.png"):
        assert (tmp_path / "out" / fig).stat().st_size > 0


def test_dates_data_is_exact_and_split():
    """Formats with a strptime twin parse back to the target; no held-out day is trained on."""
    import datetime

    from demos import dates
    rng = np.random.default_rng(0)
    train, test = dates.split_days(rng, 500)
    assert not set(train.tolist()) & set(test.tolist())
    assert len(train) + len(test) == 36525  # 1950-01-01 .. 2049-12-31
    twins = {0: "%A, %B %d, %Y", 2: "%b %d %Y", 3: "%d %B %Y", 4: "%B %d, %Y", 5: "%d.%m.%Y",
             6: "%a %d %b %Y", 9: "%Y/%m/%d"}
    for o in rng.choice(train, 50):
        d = datetime.date.fromordinal(int(o))
        for k, fmt in twins.items():
            text = dates.FORMATS[k](d)
            assert datetime.datetime.strptime(text, fmt).date() == d, text
    src, src_len, tgt_in, tgt = dates.encode([("24.09.84", "1984-09-24")])
    assert src_len.tolist() == [8] and tgt[:, 0].tolist()[:4] == [1, 9, 8, 4]
    assert tgt_in[0, 0] == dates.BOS and tgt[-1, 0] == dates.EOS


def test_dialogue_learns(tmp_path):
    from demos import dialogue
    res = dialogue.main(common(tmp_path) + ["--quick"])
    for name in ("hred", "last_turn_seq2seq"):
        # far below a uniform guess over the vocabulary, per reply token
        assert res[name]["loss_last"] < 0.5 * math.log(dialogue.VOCAB)
        assert res[name]["loss_last"] < 0.7 * res[name]["loss_first"]


def test_dialogue_data_needs_an_earlier_turn():
    from demos import dialogue
    rng = np.random.default_rng(0)
    train, test = dialogue.split_pairs(rng)
    assert not set(train) & set(test) and len(train) + len(test) == 64
    for _ in range(50):
        pair = test[rng.integers(len(test))]
        turns, reply = dialogue.dialogue(rng, pair)
        answer = reply[-2]
        assert answer in (dialogue.NAMES[pair[0]], dialogue.CITIES[pair[1]])
        assert answer not in turns[-1] and any(answer in t for t in turns[:-1])


def test_digit_strip_learns(tmp_path):
    from demos import digit_strip
    res = digit_strip.main(common(tmp_path, plots=True) + ["--quick"])
    for name in ("soft", "hard"):
        # below a uniform guess over the 11 outputs (the quick run learns where strips end; the
        # digits themselves need the default run)
        assert res[name]["nll_last"] < 0.85 * math.log(11)
        assert res[name]["nll_last"] < 0.9 * res[name]["nll_first"]
    for name in ("soft", "hard"):
        assert (tmp_path / "out" / f"{name}_attention.png").stat().st_size > 0


def test_digit_strip_data():
    """Labels are the digits placed; windows are the 8 x 8 slices of the grid, row-major."""
    from demos import digit_strip as ds
    images = np.stack([np.full((8, 8), d / 10.0) for d in range(10)])   # digit d: value d/10
    canvas, tgt_in, tgt, lengths = ds.strips(np.random.default_rng(0), images, np.arange(10), 20)
    for b in range(20):
        n = lengths[b] - 1
        assert tgt[n, b] == ds.EOS and tgt_in[0, b] == ds.BOS and 3 <= n <= 4
        values = sorted(set(np.round(canvas[b][canvas[b] > 0] * 10).astype(int)))
        assert values == sorted(set(tgt[:n, b].tolist()) - {0})
    w = ds.windows(canvas)
    assert w.shape == (20, 45, 64)
    np.testing.assert_array_equal(w[3, 1 * 15 + 4].reshape(8, 8), canvas[3, 2:10, 8:16])


def test_exposure_bias_every_method_learns(tmp_path):
    from demos import exposure_bias
    res = exposure_bias.main(common(tmp_path, plots=True) + ["--quick"])
    assert set(res["methods"]) == set(exposure_bias.METHODS)
    for name, r in res["methods"].items():
        # free-running greedy decoding beats chance (one digit in 10) at the training lengths
        assert r["train"]["token_accuracy"] > 0.15, (name, r["train"])
        assert np.isfinite(r["loss_last"])
    assert 0.0 <= res["methods"]["professor_forcing"]["discriminator_accuracy_last_50"] <= 1.0
    for name in ("curves.png", "results.json", "table.md"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_exposure_bias_data_are_running_sums():
    from demos import exposure_bias
    pairs = exposure_bias.make_pairs(np.random.default_rng(0), 50, (3, 8))
    for x, y in pairs:
        assert 3 <= len(x) <= 8 and y[0] == x[0]
        assert all(y[t] == (x[t] + y[t - 1]) % 10 for t in range(1, len(x)))
    src, src_len, tgt_in, tgt, tgt_len = exposure_bias.encode(pairs[:2])
    assert tgt[tgt_len[0] - 1, 0] == exposure_bias.EOS and tgt_in[0, 0] == exposure_bias.BOS
    assert (src[:src_len[1], 1] == pairs[1][0] + 1).all()
