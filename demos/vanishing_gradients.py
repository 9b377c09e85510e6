"""Why plain RNNs forget: the lecture's stability study, made runnable.

(a) Memory of one input pulse in the scalar recurrence h_t = act(w h_{t-1} + x_t), with x_0 = 1
and x_t = 0 after, for w = 0.9, 1.0, 1.1 and act = linear, sigmoid, tanh, ReLU: the memory
m_t = |h_t - h_t'| (h' the same recurrence without the pulse) decays, stays, blows up or
saturates. For a linear recurrent matrix W, ||h_t|| grows per step by the measured rate, which
we compare with the prediction rho(W) = |largest eigenvalue|.

(b) tanh, sigmoid and ReLU RNNs, LSTMs and GRUs, all with their recurrent matrices (each gate
block) rescaled to spectral radius 0.8, 1.0 and 1.2, read the same random sequences. The gated
cells come twice: as initialised by default (LSTM forget bias 1, GRU update bias ~0: gates near
sigmoid(1) = 0.73 and 0.5, whose products over 50 steps vanish too), and with the gates that keep
the state started near 0.95 (bias 3), the usual "remember by default" start. We plot
||dL/dh_t|| (L the sum of the last step's outputs) against the number of steps back, and the
share of saturated units per step, and print which keep a gradient 50 steps back.

    python -m demos.vanishing_gradients            # under a minute on 2 cores
"""
from __future__ import annotations

import json

import numpy as np

import minigrad as mg
import rnn
from demos import _common
from rnn.analysis import saturation, scale_spectral_radius, spectral_radius, state_gradient_norms

ACTIVATIONS = {"linear": lambda a: a, "sigmoid": mg.sigmoid, "tanh": mg.tanh, "relu": mg.relu}
WEIGHTS = (0.9, 1.0, 1.1)
RADII = (0.8, 1.0, 1.2)
KEEP = 1e-3  # a gradient "is kept" when at least this share of it survives the steps back


class SigmoidRNNCell(rnn.Cell):
    """h' = sigmoid(W_ih x_t + b + W_hh h): an Elman cell with a sigmoid (a custom cell: rnn
    has tanh and ReLU Elman cells built in)."""

    def __init__(self, input_size: int, hidden_size: int, *, rng=None):
        super().__init__(input_size, hidden_size, rng=rng)
        self.weight_ih = self.parameter(hidden_size, input_size)
        self.weight_hh = self.parameter(hidden_size, hidden_size)
        self.bias = self.parameter(hidden_size)

    def forward(self, x_t, h):
        h = mg.sigmoid(x_t @ self.weight_ih.T + self.bias + h @ self.weight_hh.T)
        return h, h


CELLS = {
    "tanh RNN": lambda n_in, H, rng: rnn.RNNCell(n_in, H, "tanh", rng=rng),
    "sigmoid RNN": lambda n_in, H, rng: SigmoidRNNCell(n_in, H, rng=rng),
    "ReLU RNN": lambda n_in, H, rng: rnn.RNNCell(n_in, H, "relu", rng=rng),
    "LSTM": lambda n_in, H, rng: rnn.LSTMCell(n_in, H, rng=rng),
    "LSTM f-bias 3": lambda n_in, H, rng: rnn.LSTMCell(n_in, H, forget_bias=3.0, rng=rng),
    "GRU": lambda n_in, H, rng: rnn.GRUCell(n_in, H, rng=rng),
    "GRU z-bias 3": lambda n_in, H, rng: remembering_gru(n_in, H, rng),
}


def remembering_gru(n_in: int, H: int, rng) -> rnn.GRUCell:
    """A GRU whose update gates start near 1 (z = sigmoid(3 + ...) ~ 0.95): h' ~ h, it remembers
    by default, like an LSTM with a forget bias of 3."""
    cell = rnn.GRUCell(n_in, H, rng=rng)
    cell.bias_ih.data[H:2 * H] = 3.0
    cell.bias_hh.data[H:2 * H] = 0.0
    return cell


def pulse_memory(act, w: float, T: int) -> np.ndarray:
    """m_t = |h_t - h'_t| for t = 0..T-1: h with the pulse x_0 = 1, h' without (both from 0)."""
    with mg.no_grad():
        h = mg.tensor([1.0, 0.0], dtype=np.float64)  # x_0 of the two runs
        h = act(h)
        memory = [abs(float(h[0] - h[1]))]
        for _ in range(T - 1):
            h = act(w * h)
            memory.append(abs(float(h[0] - h[1])))
    return np.array(memory)


def pulse_roundoff(act, w: float, T: int) -> np.ndarray:
    """The float64 round-off of h'_t (the run without the pulse): a difference |h_t - h'_t| at
    or below it is rounding noise. 0 where h' is exactly 0 (linear, ReLU: nothing to round)."""
    with mg.no_grad():
        h = act(mg.tensor([0.0], dtype=np.float64))
        levels = [float(np.spacing(abs(h.numpy()[0])))]
        for _ in range(T - 1):
            h = act(w * h)
            levels.append(float(np.spacing(abs(h.numpy()[0]))))
    levels = np.array(levels)
    return np.where(levels > 1e-300, levels, 0.0)  # spacing(0) is the smallest subnormal


def linear_rate(W: np.ndarray, T: int, rng) -> tuple[float, np.ndarray]:
    """Run h_t = W h_{t-1} from a random h_0; the measured growth per step over the second half,
    (||h_T|| / ||h_{T/2}||)^(1 / (T - T/2)), and the norms ||h_t||."""
    h = mg.tensor(rng.normal(size=W.shape[0]))
    Wt = mg.tensor(W)
    norms = []
    with mg.no_grad():
        for _ in range(T):
            h = Wt @ h
            norms.append(float(mg.sqrt((h * h).sum())))
    norms = np.array(norms)
    half = T // 2
    return float((norms[-1] / norms[half - 1]) ** (1.0 / (T - half))), norms


def set_radius(cell, radius: float) -> None:
    """Rescale every (H, H) block of the cell's recurrent matrix to spectral radius `radius`."""
    W = cell.weight_hh.numpy()
    H = W.shape[1]
    blocks = [scale_spectral_radius(W[i:i + H], radius) for i in range(0, W.shape[0], H)]
    cell.weight_hh.data[...] = np.concatenate(blocks, axis=0)


def main(argv=None) -> dict:
    p = _common.parser("vanishing_gradients", __doc__.split("\n\n")[0])
    p.add_argument("--T", type=int, default=100, help="sequence length in (b)")
    p.add_argument("--pulse-steps", type=int, default=60, help="steps followed in (a)")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--inputs", type=int, default=8)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--back", type=int, default=50, help="steps back for the verdict")
    return _common.launch(p, argv, run, check=_check)


def _check(args) -> None:
    if not 0 < args.back < args.T:
        raise ValueError(f"vanishing_gradients: --back must lie in (0, T={args.T}), got "
                         f"{args.back}")


def run(args) -> dict:
    rng, out, clock = _common.start(args)
    results = {"pulse": {}, "linear": {}, "gradients": {}, "kept": {}}
    curves = {"pulse": {}, "pulse_roundoff": {}, "linear": {}, "gradients": {}, "saturation": {}}

    # (a) one pulse, scalar recurrences
    print(f"(a) memory of a pulse after {args.pulse_steps} steps, |h_t - h'_t|:")
    for name, act in ACTIVATIONS.items():
        for w in WEIGHTS:
            m = pulse_memory(act, w, args.pulse_steps)
            # 0.0: below float64 resolution (< 1e-16 of h)
            results["pulse"].setdefault(name, {})[w] = float(m[-1])
            curves["pulse"].setdefault(name, {})[w] = m
        # the round-off level, with w = 1.0 (where h' changes least) standing for the panel
        curves["pulse_roundoff"][name] = pulse_roundoff(act, 1.0, args.pulse_steps)
        print(f"  {name:8s} " + "  ".join(f"w={w}: {v:9.3g}"
                                           for w, v in results["pulse"][name].items()))
    H = args.hidden
    base = rng.normal(size=(H, H)) / np.sqrt(H)
    print(f"    linear h_t = W h_(t-1), H = {H}: measured growth per step vs rho(W)")
    for radius in RADII:
        W = scale_spectral_radius(base, radius)
        rate, curves["linear"][radius] = linear_rate(W, 4 * args.pulse_steps, rng)
        results["linear"][radius] = {"predicted": spectral_radius(W), "measured": rate}
        print(f"    rho(W) = {spectral_radius(W):.4f}   measured {rate:.4f}")

    # (b) gradient norms and saturation, the same sequences for every cell
    T, back = args.T, args.back
    x = mg.tensor(rng.normal(size=(T, args.batch, args.inputs)).astype(np.float32))
    print(f"(b) gradient reaching {back} steps back, ||dL/dh_(T-1-{back})|| / ||dL/dh_(T-1)||:")
    print("             " + "".join(f"{name:>15s}" for name in CELLS))
    bar = _common.progress(len(RADII) * len(CELLS), "cells", args.quiet)
    it = iter(bar)
    for radius in RADII:
        line = []
        for name, make in CELLS.items():
            cell = make(args.inputs, H, np.random.default_rng(args.seed))
            set_radius(cell, radius)
            norms = state_gradient_norms(cell, x)
            ratio = norms[::-1] / norms[-1]  # ratio[k]: k steps back from the last step
            kept = bool(KEEP <= ratio[back] < 1 / KEEP)
            results["gradients"].setdefault(name, {})[radius] = float(ratio[back])
            results["kept"].setdefault(name, {})[radius] = kept
            curves["gradients"].setdefault(radius, {})[name] = ratio
            curves["saturation"].setdefault(radius, {})[name] = saturation(cell, x)["all"]
            mark = ("grow" if ratio[back] > 1 else "keep") if kept else "  - "
            line.append(f"{ratio[back]:10.1e} {mark}")
            next(it, None)
        print(f"    rho = {radius}: " + "".join(line))
    bar.close()
    for radius in RADII:
        keep = [n for n in CELLS if results["kept"][n][radius]]
        print(f"    rho = {radius}: a gradient survives {back} steps back (>= {KEEP:g} of it, "
              f"not exploding) in: {', '.join(keep) or 'none'}")
    if not args.no_plots:
        plot(curves, out)
    results["seconds"] = clock()
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.1f} s; figures and results in {out}/")
    return results


def plot(curves, out):
    """The four figures. Log-scale curves show only what was computed: a value that became
    exactly 0 (underflow, or a difference below the round-off of h) ends its line with a down
    triangle on the bottom edge, and the pulse panels draw the round-off level of h (values
    there are rounding noise, not memory) instead of flooring anything silently."""
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, len(ACTIVATIONS), figsize=(14, 3.9), sharey=True)
    marks = []
    for ax, (name, by_w) in zip(axes, curves["pulse"].items()):
        zeros = [_log_line(ax, m, f"w = {w}", f"C{k}") for k, (w, m) in enumerate(by_w.items())]
        marks.append(zeros)
        floor = curves["pulse_roundoff"][name]
        if floor.max() > 0:
            ax.semilogy(floor, color="gray", ls=":", lw=1.2,
                        label="round-off of h (below: noise)")
        ax.set(title=name, xlabel="step t")
    _zero_marks(axes, marks)
    axes[0].set_ylabel("memory of the pulse |h_t - h'_t|")
    _legend_below(fig, axes, "\u25bc: exactly 0 from this step on (the difference is below "
                             "float64 resolution)")
    _save(plt, fig, out / "pulse_memory.png")

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for radius, norms in curves["linear"].items():
        ax.semilogy(norms, label=f"rho(W) = {radius}")
    ax.set(xlabel="step t", ylabel="||h_t||", title="linear recurrence h_t = W h_(t-1)")
    ax.legend()
    _save(plt, fig, out / "linear_rate.png")

    fig, axes = plt.subplots(1, len(RADII), figsize=(15, 4.6), sharey=True)
    marks = []
    for ax, (radius, by_cell) in zip(axes, curves["gradients"].items()):
        marks.append([_log_line(ax, y, name, f"C{k}")
                      for k, (name, y) in enumerate(by_cell.items())])
        ax.set(title=f"spectral radius {radius}", xlabel="steps back from the last")
    _zero_marks(axes, marks)
    axes[0].set_ylabel("||dL/dh|| relative to the last step")
    _legend_below(fig, axes, "\u25bc: exactly 0 from this step on (float32 underflow: "
                             "smaller than 1e-45)")
    _save(plt, fig, out / "gradient_norms.png")

    fig, axes = plt.subplots(1, len(RADII), figsize=(15, 4.6), sharey=True)
    styles = ["-", "--", "-.", ":"]
    for ax, (radius, by_cell) in zip(axes, curves["saturation"].items()):
        for k, (name, y) in enumerate(by_cell.items()):
            ax.plot(y, color=f"C{k}", ls=styles[k % 4], lw=1.4, label=name)
        ax.set(title=f"spectral radius {radius}", xlabel="step t")
    axes[0].set_ylabel("share of saturated units")
    _legend_below(fig, axes, "lines at or near 0 lie on top of each other (line styles tell "
                             "them apart where they part)")
    _save(plt, fig, out / "saturation.png")


def _log_line(ax, y, label, color):
    """Draw y on a log axis up to its last non-zero value. Returns (step, color, label) where it
    turned exactly 0 for good, for `_zero_marks`, or None."""
    y = np.asarray(y, dtype=np.float64)
    nonzero = np.flatnonzero(y > 0)
    end = nonzero[-1] + 1 if nonzero.size else 0
    if end:
        ax.semilogy(np.arange(end), np.where(y[:end] > 0, y[:end], np.nan), color=color,
                    label=label)
    return (end, color, None if end else label) if end < len(y) else None


def _zero_marks(axes, marks):
    """A down triangle on the bottom edge where a line became exactly 0 (drawn once the y
    limits are known, so it sits on the edge of the drawn range)."""
    for ax, zeros in zip(axes, marks):
        low = ax.get_ylim()[0]
        for step, color, label in filter(None, zeros):
            ax.plot([step], [low], marker="v", ms=9, color=color, clip_on=False, ls="none",
                    label=label)
        ax.set_ylim(bottom=low)


def _legend_below(fig, axes, note):
    """One legend for the whole figure, under the panels (so it covers no curve), and a note."""
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    fig.legend([handles[lab] for lab in labels], labels, loc="lower center",
               bbox_to_anchor=(0.5, 0.045), ncol=min(len(labels), 8), fontsize=9, frameon=False)
    fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=8.5, color="0.25")


def _save(plt, fig, path):
    if not fig.legends:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

if __name__ == "__main__":
    main()
