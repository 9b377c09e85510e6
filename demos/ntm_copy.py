"""A Neural Turing Machine learns to copy (or, with --task recall, associative recall), batched.

The NTM (an LSTM controller with one read and one write head on a 64 x 16 memory) reads a
sequence of random 8-bit vectors and a delimiter, then writes the sequence back. It trains on
lengths 1..--max-len drawn afresh for every batch, and is tested on lengths up to twice that: an
NTM that learned to write the vectors to successive slots and read them back in order copies
lengths it never saw. An LSTM of about as many weights, trained on the same batches, is the
baseline. Scored in bits of error per sequence (outputs rounded to 0/1; the target is < 0.5 at
training lengths; guessing makes half of the 8 L bits wrong).

    python -m demos.ntm_copy                   # about 3 minutes of CPU (2-core machine)
    python -m demos.ntm_copy --task recall
"""
from __future__ import annotations

import json

import numpy as np

import minigrad as mg
import rnn
from demos import _common
from rnn.memory import NTMCell, tasks

WIDTH = {"copy": 8, "recall": 6}


def make_batch(task: str, rng, batch: int, size: int) -> tasks.SequenceTask:
    """A copy batch of `size` vectors, or a recall batch of max(size, 2) items of 3 vectors."""
    if task == "copy":
        return tasks.copy_task(rng, batch, size, WIDTH[task])
    return tasks.associative_recall_task(rng, batch, max(size, 2), 3, WIDTH[task])


def io_sizes(task: str) -> tuple:
    probe = make_batch(task, np.random.default_rng(0), 1, 2)
    return probe.inputs.shape[2], probe.targets.shape[2]


def models(task: str, args, rng) -> dict:
    n_in, n_out = io_sizes(task)
    ntm = NTMCell(n_in, n_out, controller_size=args.controller, memory_slots=args.slots,
                  slot_size=args.slot_size, rng=rng)
    # the baseline: an LSTM of H units and a linear read-out, 4H(n_in + H + 1) + (H + 1) n_out
    # weights, with H the largest that keeps them to the NTM's count n
    n, b = ntm.num_parameters(), 4 * (n_in + 1) + n_out
    hidden = int((-b + np.sqrt(b * b + 16 * (n - n_out))) / 8)
    lstm = rnn.LSTMCell(n_in, hidden, rng=rng)
    readout = mg.nn.Linear(hidden, n_out, rng=rng)
    return {"ntm": (ntm, None), "lstm": (lstm, readout)}


def logits_of(model, x):
    cell, readout = model
    out, _ = rnn.unroll(cell, x)
    return out if readout is None else readout(out)


def masked_bce(logits, data):
    """Bits of cross-entropy per sequence, over the scored steps only."""
    per_bit = mg.binary_cross_entropy_with_logits(logits, mg.tensor(data.targets),
                                                  reduction="none")
    return mg.sum(per_bit * mg.tensor(data.mask[..., None])) * (1 / (np.log(2) *
                                                                     data.inputs.shape[1]))


def bit_errors(model, data) -> float:
    """Mean bits wrong per sequence, outputs rounded at probability 1/2 (logit 0)."""
    with mg.no_grad():
        logits = logits_of(model, mg.tensor(data.inputs)).numpy()
    wrong = ((logits > 0) != (data.targets > 0.5)) * data.mask[..., None]
    return float(wrong.sum() / data.inputs.shape[1])


def parameters(model):
    cell, readout = model
    return cell.parameters() + ([] if readout is None else readout.parameters())


def train(model, name, args, rng):
    params = parameters(model)
    opt = mg.optim.Adam(params, lr=args.lr)
    losses = []
    bar = _common.progress(args.steps, f"{name} on {args.task}", args.quiet)
    for step in bar:
        data = make_batch(args.task, rng, args.batch, int(rng.integers(1, args.max_len + 1)))
        loss = masked_bce(logits_of(model, mg.tensor(data.inputs)), data)
        opt.zero_grad()
        loss.backward()
        mg.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        losses.append(float(loss.item()))
        if step % 20 == 0:
            bar.set_postfix(bits=f"{np.mean(losses[-50:]):.3f}")
    return losses


def main(argv=None) -> dict:
    p = _common.parser("ntm_copy", __doc__.split("\n\n")[0])
    p.add_argument("--task", choices=sorted(WIDTH), default="copy")
    p.add_argument("--steps", type=int, default=5000, help="training batches per model")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-len", type=int, default=10,
                   help="longest training sequence (copy: vectors; recall: items)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--controller", type=int, default=100)
    p.add_argument("--slots", type=int, default=64)
    p.add_argument("--slot-size", type=int, default=16)
    p.add_argument("--test-batch", type=int, default=64, help="sequences per tested length")
    p.add_argument("--quick", action="store_true",
                   help="a small NTM for a few seconds: for tests (learns, far from the target)")
    return _common.launch(p, argv, run, check=quick_sizes)


def quick_sizes(args):
    if args.quick:
        args.steps, args.batch, args.max_len = 60, 16, 2
        args.controller, args.slots, args.slot_size, args.test_batch = 32, 8, 8, 32
        args.lr = 1e-2


def run(args) -> dict:
    rng, out, clock = _common.start(args)
    nets = models(args.task, args, rng)
    results = {"task": args.task, "steps": args.steps, "batch": args.batch,
               "max_len": args.max_len, "quick": args.quick,
               "parameters": {k: sum(p.data.size for p in parameters(m))
                              for k, m in nets.items()}}
    chance_per_vector = WIDTH[args.task] / 2
    lengths = list(range(1, 2 * args.max_len + 1))
    test_rng = np.random.default_rng(args.seed + 1)  # the same test sequences for both models
    tests = {n: make_batch(args.task, test_rng, args.test_batch, n) for n in lengths}
    curves, losses = {}, {}
    for name, model in nets.items():
        losses[name] = train(model, name, args, rng)
        curves[name] = [bit_errors(model, tests[n]) for n in lengths]
        results[f"{name}_seconds"] = clock()
    train_range = slice(0, args.max_len)
    for name in nets:
        results[f"{name}_bits_per_sequence"] = dict(zip(map(str, lengths), curves[name]))
        results[f"{name}_train_lengths_mean_bits"] = float(np.mean(curves[name][train_range]))
        results[f"{name}_train_lengths_max_bits"] = float(np.max(curves[name][train_range]))
        results[f"{name}_loss_first"] = float(np.mean(losses[name][:50]))
        results[f"{name}_loss_last"] = float(np.mean(losses[name][-50:]))
    # the vectors scored: the whole sequence for copy, the one recalled item (3 vectors) for recall
    vectors = {n: 3 if args.task == "recall" else n for n in lengths}
    results["chance_bits_per_sequence"] = {str(n): chance_per_vector * vectors[n]
                                           for n in lengths}
    results["target_met"] = results["ntm_train_lengths_max_bits"] < 0.5
    for name in nets:
        print(f"{name.upper()} ({results['parameters'][name]} weights): bits wrong per sequence "
              f"at lengths 1..{args.max_len}: mean {results[f'{name}_train_lengths_mean_bits']:.3f}"
              f", worst {results[f'{name}_train_lengths_max_bits']:.3f}; at length "
              f"{2 * args.max_len}: {curves[name][-1]:.2f} (chance "
              f"{chance_per_vector * vectors[lengths[-1]]:.0f})")
    print(f"target (< 0.5 bits per sequence at every training length): "
          f"{'met' if results['target_met'] else 'NOT met'}")
    results["seconds"] = clock()
    if not args.no_plots:
        plot_curves(losses, curves, lengths, results, args, out / "error_vs_length.png")
        plot_memory(nets["ntm"][0], make_batch(args.task, np.random.default_rng(args.seed + 2),
                                               1, args.max_len), out / "heads_and_memory.png")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.1f} s; figures and results in {out}/")
    return results


def plot_curves(losses, curves, lengths, results, args, path):
    plt = _common.pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, ls in losses.items():
        smooth = np.convolve(ls, np.ones(25) / 25, mode="valid") if len(ls) > 25 else ls
        a.semilogy(smooth, label=name.upper(), lw=0.9)
    a.set(xlabel="batch", ylabel="bits of cross-entropy per sequence",
          title=f"training ({args.task}, lengths 1..{args.max_len})")
    a.legend()
    for name, c in curves.items():
        b.plot(lengths, c, "o-", ms=3, label=name.upper())
    b.plot(lengths, [results["chance_bits_per_sequence"][str(n)] for n in lengths], "k:",
           label="chance")
    b.axvline(args.max_len + 0.5, color="grey", lw=0.8)
    b.text(args.max_len + 0.7, b.get_ylim()[1] * 0.9, "untrained lengths", fontsize=8)
    b.set(xlabel="sequence length", ylabel="bits wrong per sequence", yscale="symlog",
          title="error against length")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_memory(cell, data, path):
    """One sequence step by step: inputs, outputs, the heads' weights over time and the final
    memory (the state is read after every step, so the loop is written out here)."""
    reads, writes = [], []
    outs = []
    with mg.no_grad():
        state = cell.initial_state(1)
        x = mg.tensor(data.inputs)
        for t in range(x.shape[0]):
            out, state = cell(x[t], state)
            outs.append(mg.sigmoid(out).numpy()[0])
            reads.append(state[1].numpy()[0, 0])
            writes.append(state[2].numpy()[0, 0])
        memory = state[0].numpy()[0]
    plt = _common.pyplot()
    fig, ax = plt.subplots(1, 5, figsize=(14, 4), gridspec_kw={"width_ratios": [1, 1, 2, 2, 1.2]})
    panels = [(data.inputs[:, 0].T, "input"), (np.array(outs).T, "output"),
              (np.array(writes).T, "write weights"), (np.array(reads).T, "read weights"),
              (memory, "memory at the end")]
    for a, (img, title) in zip(ax, panels):
        a.imshow(img, aspect="auto", cmap="viridis", interpolation="nearest")
        a.set_title(title, fontsize=9)
        a.set_xlabel("slot element" if title.startswith("memory") else "time step")
    ax[2].set_ylabel("memory slot")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
