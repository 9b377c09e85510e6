"""End-to-end memory networks answer bAbI-like questions: one MemN2N per task, trained on 2,000
generated stories and tested on 1,000 others.

Tasks (rnn.memory.tasks, a vocabulary and sentence forms of our own): 1 single supporting fact,
2 two supporting facts, 3 three supporting facts, 16 basic induction. The model is the paper's
best 1k configuration: 3 hops, adjacent weight tying, position and temporal encoding, linear
start (no softmax in the hops) for the first epochs, random noise (10% empty memories added in
training). Beside each accuracy: the
majority answer's, the accuracy of always giving the commonest answer. Sukhbaatar et al.'s table
as a guide (its 1k column): task 1 >= 99%, task 2 >= 80%, task 3 >= 50%; task 16 reported.
Our stories are longer than the paper's (up to 12 sentences, 8 people) and at 1,000 of them
task 1 lands at 98.7-99.2% depending on the seed; 2,000 clear 99% on every seed tried. The
hops' attention on a task-16 story is printed (and drawn) as the paper's figure shows it: the
first test story the model answers right.

    python -m demos.babi                 # about two minutes on 2 cores
    python -m demos.babi --tasks 2 --train-stories 10000
"""
from __future__ import annotations

import json

import numpy as np

import minigrad as mg
from demos import _common
from rnn.memory import MemN2N, tasks

TARGETS = {1: 0.99, 2: 0.80, 3: 0.50}


def stories(rng, task: int, count: int, longest: int) -> list:
    """`count` stories of `task`, each of 6..`longest` sentences (task 16 has its own 9)."""
    shortest = max(6, tasks.FEWEST_SENTENCES[task])
    return [tasks.babi_stories(rng, task, 1, sentences=int(rng.integers(shortest, longest + 1)))[0]
            for _ in range(count)]


def add_empty_memories(rng, sentences, fraction: float):
    """The paper's random noise: about `fraction` empty memories slipped in among each story's
    sentences (the oldest drop out when the memory is full), so the temporal encoding cannot
    learn slot positions by heart. The empty slots are never attended; they only move the
    older sentences back in time."""
    B, S, J = sentences.shape
    out = np.zeros_like(sentences)
    for b in range(B):
        rows = [r for r in sentences[b] if r.any()]
        for _ in range(rng.binomial(len(rows), fraction)):
            rows.insert(int(rng.integers(0, len(rows) + 1)), np.zeros(J, sentences.dtype))
        rows = rows[-S:]
        out[b, S - len(rows):] = rows
    return out


def train(net, data, args, rng, desc):
    sentences, questions, answers = data
    n = len(answers)
    per_epoch = -(-n // args.batch)
    opt = mg.optim.Adam(net.parameters(), lr=args.lr)
    losses = []
    bar = _common.progress(args.epochs * per_epoch, desc, args.quiet)
    net.linear_start = args.linear_start > 0
    for step in bar:
        epoch = step // per_epoch
        if step % per_epoch == 0:
            order = rng.permutation(n)
            net.linear_start = epoch < args.linear_start
        k = order[(step % per_epoch) * args.batch:][:args.batch]
        story = sentences[k] if args.noise == 0 else add_empty_memories(rng, sentences[k],
                                                                          args.noise)
        logits, _ = net(story, questions[k])
        loss = mg.cross_entropy(logits, answers[k])
        opt.zero_grad()
        loss.backward()
        mg.nn.utils.clip_grad_norm_(net.parameters(), 40.0)
        opt.step()
        losses.append(float(loss.item()))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-per_epoch:]):.3f}")
    net.linear_start = False
    return losses


def accuracy(net, data) -> float:
    sentences, questions, answers = data
    with mg.no_grad():
        logits, _ = net(sentences, questions)
    return float((logits.numpy().argmax(axis=1) == answers).mean())


def main(argv=None) -> dict:
    p = _common.parser("babi", __doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, nargs="+", default=[1, 2, 3, 16])
    p.add_argument("--train-stories", type=int, default=2000)
    p.add_argument("--test-stories", type=int, default=1000)
    p.add_argument("--longest", type=int, default=12, help="most sentences in a story")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--linear-start", type=int, default=20,
                   help="epochs without the hops' softmax at the start (0: none)")
    p.add_argument("--noise", type=float, default=0.1,
                   help="fraction of empty memories added while training (0: none)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--embed", type=int, default=20)
    p.add_argument("--hops", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="task 1, few stories and epochs")
    return _common.launch(p, argv, run, check=quick_sizes)


def quick_sizes(args):
    if args.quick:
        args.tasks, args.train_stories, args.test_stories = [1], 400, 200
        args.epochs, args.linear_start, args.lr = 25, 5, 1e-2


def run(args) -> dict:
    rng, out, clock = _common.start(args)
    vocab = tasks.babi_vocabulary()
    results = {"tasks": {}, "train_stories": args.train_stories, "epochs": args.epochs}
    shown = None
    for task in args.tasks:
        raw_train = stories(rng, task, args.train_stories, args.longest)
        raw_test = stories(rng, task, args.test_stories, args.longest)
        memory = max(len(s.sentences) for s in raw_train + raw_test)
        width = max(len(x) for s in raw_train + raw_test for x in s.sentences + [s.question])
        train_data = tasks.encode_stories(raw_train, vocab, memory, width)
        test_data = tasks.encode_stories(raw_test, vocab, memory, width)
        net = MemN2N(len(vocab), args.embed, memory_size=memory, sentence_length=width,
                     hops=args.hops, rng=rng)
        losses = train(net, train_data, args, rng, f"MemN2N task {task}")
        commonest = np.bincount(train_data[2]).argmax()
        res = {"test_accuracy": accuracy(net, test_data),
               "train_accuracy": accuracy(net, train_data),
               "majority_answer_accuracy": float((test_data[2] == commonest).mean()),
               "loss_first": float(np.mean(losses[:20])),
               "loss_last": float(np.mean(losses[-20:]))}
        if task in TARGETS:
            res["target"] = TARGETS[task]
            res["target_met"] = res["test_accuracy"] >= TARGETS[task]
        results["tasks"][str(task)] = res
        print(f"task {task}: test accuracy {100 * res['test_accuracy']:.1f}% (train "
              f"{100 * res['train_accuracy']:.1f}%, majority answer "
              f"{100 * res['majority_answer_accuracy']:.1f}%)"
              + (f", target {100 * TARGETS[task]:.0f}%: "
                 f"{'met' if res['target_met'] else 'NOT met'}" if task in TARGETS else ""))
        if task == 16 or shown is None:
            shown = (task, net, raw_test, test_data, memory)
    results["attention_example"] = attention_table(*shown, vocab)
    results["seconds"] = clock()
    if not args.no_plots:
        plot(results, out / "accuracy_and_attention.png")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.1f} s; figures and results in {out}/")
    return results


def attention_table(task, net, raw_test, test_data, memory, vocab) -> dict:
    """The attention of every hop over the sentences of the first test story the model answers
    right (the first story, if it answers none), printed as a table."""
    sentences, questions, answers = test_data
    with mg.no_grad():
        logits, attention = net(sentences, questions)
    right = np.flatnonzero(logits.numpy().argmax(axis=1) == answers)
    k = int(right[0]) if len(right) else 0
    story = raw_test[k]
    att = attention.numpy()[:, k, memory - len(story.sentences):]  # (hops, sentences)
    guess = vocab[int(logits.numpy()[k].argmax())]
    print(f"\ntask {task}, test story {k} (the first answered right): the attention of each hop "
          f"(* supporting fact)")
    print(f"{'':3}{'sentence':34}" + "".join(f"hop {k + 1:<3}" for k in range(att.shape[0])))
    for i, words in enumerate(story.sentences):
        mark = "*" if i in story.supporting else " "
        print(f"{mark:3}{' '.join(words):34}" + "".join(f"{a:<7.2f}" for a in att[:, i]))
    print(f"question: {' '.join(story.question)}?  answer: {story.answer}  model: {guess}\n")
    return {"task": task, "test_story": k, "sentences": [" ".join(w) for w in story.sentences],
            "supporting": story.supporting, "question": " ".join(story.question),
            "answer": story.answer, "model_answer": guess, "attention": att.tolist()}


def plot(results, path):
    plt = _common.pyplot()
    ex = results["attention_example"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 1.6]})
    names = list(results["tasks"])
    acc = [100 * results["tasks"][t]["test_accuracy"] for t in names]
    base = [100 * results["tasks"][t]["majority_answer_accuracy"] for t in names]
    xs = np.arange(len(names))
    a.bar(xs - 0.2, acc, 0.4, label="MemN2N")
    a.bar(xs + 0.2, base, 0.4, label="majority answer")
    a.set(xticks=xs, xticklabels=[f"task {t}" for t in names], ylabel="test accuracy (%)",
          ylim=(0, 100), title="bAbI-like tasks")
    a.legend(fontsize=8)
    att = np.array(ex["attention"]).T
    b.imshow(att, cmap="Blues", aspect="auto", vmin=0, vmax=1)
    b.set_yticks(range(len(ex["sentences"])))
    b.set_yticklabels([("* " if i in ex["supporting"] else "") + s
                       for i, s in enumerate(ex["sentences"])], fontsize=8)
    b.set_xticks(range(att.shape[1]))
    b.set_xticklabels([f"hop {k + 1}" for k in range(att.shape[1])])
    b.set_title(f"{ex['question']}? {ex['answer']} (model: {ex['model_answer']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
