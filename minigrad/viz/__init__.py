"""See the graph: draw it (`draw`), step through backward and forward (`Stepper`), and write a
self-contained HTML page that steps through both (`html_stepper`, shown inline in Jupyter;
`save_html` writes it to a file).

>>> import minigrad as mg
>>> x = mg.tensor([1.0, 2.0], requires_grad=True, name="x")
>>> with mg.viz.record():
...     loss = (x * x).sum()
>>> [step.node.name for step in mg.viz.Stepper(loss)]
['Sum', 'Mul']
"""
from minigrad.viz.draw import Digraph, GraphvizNotFoundError, draw
from minigrad.viz.graph import record
from minigrad.viz.html import HTMLStepper, html_stepper, save_html
from minigrad.viz.stepper import BackwardStep, ForwardStep, Stepper

__all__ = ["BackwardStep", "Digraph", "ForwardStep", "GraphvizNotFoundError", "HTMLStepper",
           "Stepper", "draw", "html_stepper", "record", "save_html"]
