"""A tour of the graph of a small LSTM: drawn flat, grouped by time step, folded, and stepped.

    python -m demos.graph_tour                 # writes into out/graph_tour/
    python -m demos.graph_tour --docs          # also copies the PNGs to docs/images/

It writes the drawings, `stepper.html` and `results.json` (the paths and the size of each graph).
A 3-step LSTM (input 2, hidden 3, batch 2, composed from primitives so every gate is a node)
runs inside `mg.viz.record()`, so the drawings carry values. Open `stepper.html` in a browser
and press the right arrow to watch the forward pass, then the gradients flowing back.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

import minigrad as mg
import rnn
from demos import _common

DOCS = Path(__file__).resolve().parents[1] / "docs" / "images"


def lstm_loss(steps: int, batch: int = 2, n_in: int = 2, hidden: int = 3, seed: int = 0):
    """(loss, cell): mean squared error of an unrolled LSTM's outputs (T, B, H) against targets."""
    rng = np.random.default_rng(seed)
    cell = rnn.LSTMCell(n_in, hidden, fused=False, rng=seed).name_parameters("lstm")
    x = mg.tensor(rng.standard_normal((steps, batch, n_in)).astype(np.float32), name="x")
    y = mg.tensor(rng.standard_normal((steps, batch, hidden)).astype(np.float32), name="y")
    with mg.viz.record():
        out, _ = rnn.unroll(cell, x, per_step=True)
        loss = mg.mse_loss(out, y)
    loss.name = "loss"
    return loss, cell


def main(argv=None) -> dict:
    p = _common.parser("graph_tour", __doc__.split("\n\n")[0], plots=False)
    p.set_defaults(seed=0)
    p.add_argument("--steps", type=int, default=3, help="time steps of the small LSTM")
    p.add_argument("--long", type=int, default=100, help="time steps of the folded drawing")
    p.add_argument("--docs", action="store_true", help="copy the PNGs to docs/images/")
    return _common.launch(p, argv, run)


def run(args) -> dict:
    _, out, clock = _common.start(args)
    loss, _ = lstm_loss(args.steps, seed=args.seed)
    paths = [
        Path(mg.viz.draw(loss).render(out / "graph_flat.png")),
        Path(mg.viz.draw(loss, group="time").render(out / "graph_time.png")),
        Path(mg.viz.draw(loss, group="time").render(out / "graph_time.svg")),
    ]
    long_loss, _ = lstm_loss(args.long, seed=args.seed)
    paths.append(Path(mg.viz.draw(long_loss, group="time", fold=True)
                      .render(out / f"graph_folded_{args.long}.png")))
    stepper = mg.viz.Stepper(loss)
    paths.append(Path(mg.viz.save_html(stepper, out / "stepper.html",
                                       title=f"{args.steps}-step LSTM: forward and backward")))
    if args.docs:
        DOCS.mkdir(parents=True, exist_ok=True)
        for name, src in (("graph_tour_flat.png", paths[0]), ("graph_tour_time.png", paths[1]),
                          ("graph_tour_folded.png", paths[3])):
            shutil.copyfile(src, DOCS / name)
            paths.append(DOCS / name)
    for path in paths:
        print(path)
    results = {"steps": args.steps, "long": args.long, "forward_ops": len(stepper.forward_steps),
               "backward_nodes": len(stepper), "loss": float(loss.item()),
               "files": [str(path) for path in paths], "seconds": clock()}
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"done in {results['seconds']:.1f} s; results in {out / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
