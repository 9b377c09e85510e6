"""A tour of the graph of a small LSTM: drawn flat, grouped by time step, folded, and stepped.

    python -m demos.graph_tour                 # writes into out/graph_tour/
    python -m demos.graph_tour --docs          # also copies the PNGs to docs/images/

A 3-step LSTM (input 2, hidden 3, batch 2, composed from primitives so every gate is a node)
runs inside `mg.viz.record()`, so the drawings carry values. Open `stepper.html` in a browser
and press the right arrow to watch the forward pass, then the gradients flowing back.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

import minigrad as mg
import rnn

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


def main(argv=None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/graph_tour", help="output folder")
    p.add_argument("--steps", type=int, default=3, help="time steps of the small LSTM")
    p.add_argument("--long", type=int, default=100, help="time steps of the folded drawing")
    p.add_argument("--docs", action="store_true", help="copy the PNGs to docs/images/")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    loss, _ = lstm_loss(args.steps)
    paths = [
        Path(mg.viz.draw(loss).render(out / "graph_flat.png")),
        Path(mg.viz.draw(loss, group="time").render(out / "graph_time.png")),
        Path(mg.viz.draw(loss, group="time").render(out / "graph_time.svg")),
    ]
    long_loss, _ = lstm_loss(args.long)
    paths.append(Path(mg.viz.draw(long_loss, group="time", fold=True)
                      .render(out / f"graph_folded_{args.long}.png")))
    paths.append(Path(mg.viz.save_html(loss, out / "stepper.html",
                                       title=f"{args.steps}-step LSTM: forward and backward")))
    if args.docs:
        DOCS.mkdir(parents=True, exist_ok=True)
        for name, src in (("graph_tour_flat.png", paths[0]), ("graph_tour_time.png", paths[1]),
                          ("graph_tour_folded.png", paths[3])):
            shutil.copyfile(src, DOCS / name)
            paths.append(DOCS / name)
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main()
