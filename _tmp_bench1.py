import numpy as np, minigrad as mg, rnn, time, statistics
cell = rnn.LSTMCell(64, 256, rng=0)
T=1024
x = mg.randn(T, 32, 64)
def run(ce):
    out, st = rnn.unroll(cell, x, checkpoint_every=ce)
    out.sum().backward()
def fwd(ce):
    with mg.no_grad():
        out, st = rnn.unroll(cell, x, checkpoint_every=ce)
for ce in (None, "sqrt", None, "sqrt"):
    ts=[]
    for _ in range(5):
        t0=time.perf_counter(); run(ce); ts.append(time.perf_counter()-t0)
    tf=[]
    for _ in range(3):
        t0=time.perf_counter(); fwd(ce); tf.append(time.perf_counter()-t0)
    print(ce, statistics.median(ts), statistics.median(tf))
