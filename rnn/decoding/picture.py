"""A picture of the beam: the search tree of `beam_search(..., return_trace=True)` drawn with
Graphviz, one column per step, the returned best path in bold.

Node colours: kept in the beam (white), cut from the beam (grey, dashed), finished with EOS
(green; its penalised score underneath), the root (black). The legend is part of the drawing.
"""
from __future__ import annotations

from minigrad import checks
from rnn.decoding.beam import BeamTrace

__all__ = ["draw_beam", "sequence_text", "token_text"]

_STYLE = {
    "root": dict(shape="circle", style="filled", fillcolor="black", fontcolor="white"),
    "kept": dict(shape="box", style="rounded,filled", fillcolor="white"),
    "pruned": dict(shape="box", style="rounded,dashed,filled", fillcolor="#e8e8e8",
                   fontcolor="#777777", color="#999999"),
    "finished": dict(shape="box", style="rounded,filled", fillcolor="#c9f0c9"),
}


def token_text(token: int, vocab=None) -> str:
    """How a token is written: `vocab[token]` (escaped, so a newline reads \\n), else its id."""
    if vocab is None:
        return str(token)
    tok = vocab[token]
    return repr(tok)[1:-1] if isinstance(tok, str) else str(tok)


def sequence_text(tokens, vocab=None) -> str:
    """Tokens written one after the other: joined without spaces when every token is written
    as one character (a character vocabulary), else with spaces."""
    parts = [token_text(t, vocab) for t in tokens]
    return ("" if vocab is not None and all(len(p) == 1 for p in parts) else " ").join(parts)


def _label(node, vocab) -> str:
    if node.token is None:
        return "BOS"
    text = f"{token_text(node.token, vocab)}\\n{node.log_prob:.2f}"
    if node.score is not None:
        text += f"\\nscore {node.score:.3f}"
    return text


def draw_beam(trace: BeamTrace, example: int = 0, vocab=None, show_pruned: bool = True,
              highlight_best: bool = True):
    """A `graphviz.Digraph` of example `example`'s search tree (render it, or display it in a
    notebook). `vocab` maps token ids to strings (a str or a list); default: the ids.

    Node `n{id}` and the edge into it `e{id}` carry those ids into SVG output, so a page can
    address them (`rnn.decoding.beam_stepper` does). `highlight_best=False` leaves the best
    path unmarked."""
    try:
        import graphviz
    except ImportError:
        raise ImportError("draw_beam needs the graphviz package: pip install graphviz (and "
                          "Graphviz's dot program)") from None
    if not isinstance(trace, BeamTrace):
        raise TypeError(f"draw_beam: expected the BeamTrace of beam_search(..., "
                        f"return_trace=True), got {type(trace).__name__}")
    example = checks.integer(example, "draw_beam", "example", low=0,
                             high=len(trace.best) - 1)
    g = graphviz.Digraph(f"beam{example}", graph_attr=dict(rankdir="LR", nodesep="0.08",
                                                           ranksep="0.35"),
                         node_attr=dict(fontname="Helvetica", fontsize="10", margin="0.05,0.02"))
    nodes = [n for n in trace.nodes if n.example == example
             and (show_pruned or n.status != "pruned")]
    for n in nodes:
        attrs = dict(_STYLE[n.status], id=f"n{n.id}")
        best = n.chosen and highlight_best
        if best:
            attrs.update(penwidth="3", color="#1f5fbf")
        g.node(f"n{n.id}", _label(n, vocab), **attrs)
        if n.parent is not None:
            edge = dict(penwidth="3", color="#1f5fbf") if best else {}
            if n.status == "pruned":
                edge = dict(style="dashed", color="#999999")
            g.edge(f"n{n.parent}", f"n{n.id}", id=f"e{n.id}", **edge)
    with g.subgraph(name="cluster_legend") as legend:
        legend.attr(label="legend", fontname="Helvetica", fontsize="10", color="#bbbbbb")
        legend.node("legend_kept", "kept in the beam", **_STYLE["kept"])
        legend.node("legend_pruned", "cut from the beam", **_STYLE["pruned"])
        legend.node("legend_finished", "finished (EOS)", **_STYLE["finished"])
        legend.node("legend_best", "best path", shape="box", style="rounded", penwidth="3",
                    color="#1f5fbf")
    return g
