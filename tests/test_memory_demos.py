"""The memory demos in --quick mode: each runs end to end in a few seconds and learns at all
(beats chance or the majority answer). Their full-size figures are in docs/demos.md."""
import json

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")


def common(tmp_path, plots=False):
    return ["--quick", "--quiet", "--out", str(tmp_path)] + ([] if plots else ["--no-plots"])


def test_ntm_copy_quick(tmp_path):
    from demos import ntm_copy
    res = ntm_copy.main(common(tmp_path, plots=True))
    trained = [str(n) for n in range(1, res["max_len"] + 1)]
    chance = sum(res["chance_bits_per_sequence"][n] for n in trained) / len(trained)
    assert res["ntm_train_lengths_mean_bits"] < 0.6 * chance
    assert res["ntm_loss_last"] < res["ntm_loss_first"]
    assert (tmp_path / "heads_and_memory.png").stat().st_size > 0
    assert (tmp_path / "error_vs_length.png").stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["ntm_bits_per_sequence"] == res["ntm_bits_per_sequence"]


def test_babi_quick(tmp_path):
    from demos import babi
    res = babi.main(common(tmp_path))
    task1 = res["tasks"]["1"]
    assert task1["test_accuracy"] > task1["majority_answer_accuracy"] + 0.15
    example = res["attention_example"]
    assert len(example["attention"]) == 3 and len(example["attention"][0]) == len(
        example["sentences"])


def test_stack_rnn_quick(tmp_path):
    from demos import stack_rnn
    res = stack_rnn.main(common(tmp_path))
    # guessing gets a word of n letters a^n b^n right with probability (1/3)^n: about 0.5 of
    # the 10 words; a constant guess gets at most the n = 1 word
    assert res["stack_rnn_fraction_correct"] >= 0.3
    assert res["stack_rnn_loss_last"] < 0.8 * res["stack_rnn_loss_first"]


def test_stack_rnn_word_scoring():
    """words_correct against a model that knows the language (an oracle built from the data)."""
    import numpy as np

    import minigrad as mg
    from demos.stack_rnn import words_correct
    from rnn.memory import tasks

    class Oracle:
        """Predicts the true next letter where it is determined, 'a' elsewhere; or, when
        `spoil` is set, one wrong letter at the end of the word with n == spoil."""
        def __init__(self, pattern, ns, spoil=None):
            self.tokens, self.det, self.word = tasks.counting_stream(pattern, list(ns) + [1])
            self.ns, self.spoil = list(ns), spoil

        def __call__(self, tokens):
            T = len(tokens)
            logits = np.zeros((T, 1, 3))
            for t in range(T):
                nxt = self.tokens[t + 1]
                guess = nxt if self.det[t + 1] else 0
                if self.spoil is not None and self.det[t + 1] and nxt == 0 and \
                        self.ns[self.word[t]] == self.spoil:
                    guess = 1
                logits[t, 0, guess] = 1.0
            return mg.tensor(logits)

    ns = [4, 2, 7, 1]
    assert words_correct(Oracle("anbncn", ns), "anbncn", ns).all()
    got = words_correct(Oracle("anbncn", ns, spoil=7), "anbncn", ns)
    assert got.tolist() == [True, True, False, True]
