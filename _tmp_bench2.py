import numpy as np, minigrad as mg, rnn, time, statistics, sys
cell = rnn.LSTMCell(64, 256, rng=0)
T=int(sys.argv[1])
x = mg.randn(T, 32, 64)
def run(ce):
    out, st = rnn.unroll(cell, x, checkpoint_every=ce)
    out.sum().backward()
def fwd(ce):
    with mg.no_grad():
        out, st = rnn.unroll(cell, x, checkpoint_every=ce)
res = {None: [], "sqrt": []}
fw = []
for r in range(5):
    for ce in (None, "sqrt"):
        t0=time.perf_counter(); run(ce); res[ce].append(time.perf_counter()-t0)
    t0=time.perf_counter(); fwd(None); fw.append(time.perf_counter()-t0)
a, b = statistics.median(res[None]), statistics.median(res["sqrt"])
print(T, a, b, b/a, "fwd", statistics.median(fw))
