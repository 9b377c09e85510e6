"""Run every case of cases.py data-parallel on this process's shard; rank r writes
OUT/rank{r}.npz. Launched by tests/test_distributed.py as `mpiexec -n 2 python equivalence.py OUT`.

Each rank starts from its own random weights (seed 1 + rank): DataParallel's broadcast must
replace them by rank 0's, which are the reference's (seed 1).
"""
import os
import sys

import numpy as np

import minigrad as mg
import rnn
from cases import (B, CASES, LENGTHS, Model, ThreeLinears, batch, masked_logits, partial_loss,
                   train)
from minigrad.testing.fakedevice import FakeArray, fake_xp, to_device, to_host

mg.register_device("fake", FakeArray, fake_xp, to_device, to_host)
group = mg.distributed.init()
columns = mg.distributed.shard(B, group.rank, group.size)
results = {"rank": group.rank, "size": group.size, "columns": columns}

for name, case in CASES.items():
    def wrap(model, case=case):
        dp = mg.distributed.DataParallel(model, bucket_bytes=case.get("bucket_bytes", 2**20))
        results[f"{name}_buckets"] = dp.buckets
        return dp.average_gradients
    results[name] = train(case, columns, wrap, init_seed=1 + group.rank,
                          poison=group.rank == 1)

# gradients that exist on some ranks only; a buffer that differs until the broadcast
model = ThreeLinears()
model.register_buffer("count", mg.tensor([5.0 + group.rank]))
dp = mg.distributed.DataParallel(model)
partial_loss(model, group.rank).backward()
dp.average_gradients()
results["partial"] = {n: None if p.grad is None else p.grad.numpy()
                      for n, p in model.named_parameters()}
results["count"] = model.count.numpy()

# a masked loss with unequal token counts: docs/distributed.md's recipe (sum, divide by the
# total count over ranks, times the number of ranks)
model = Model("lstm", np.random.default_rng(1))
dp = mg.distributed.DataParallel(model)
y = batch(0)[1][:, columns]
n_tokens = group.sum(float(LENGTHS[columns].sum()))
loss = rnn.sequence_cross_entropy(masked_logits(model, columns), y, lengths=LENGTHS[columns],
                                  reduction="sum") * (group.size / n_tokens)
loss.backward()
dp.average_gradients()
results["masked"] = {n: p.grad.numpy() for n, p in model.named_parameters()}

# a rank whose model differs must make every rank raise, not hang
try:
    mg.distributed.DataParallel(Model("lstm", None, hidden=5 + group.rank))
    results["mismatch"] = "no error"
except ValueError as e:
    results["mismatch"] = str(e)

mg.save(results, os.path.join(sys.argv[1], f"rank{group.rank}.npz"))
