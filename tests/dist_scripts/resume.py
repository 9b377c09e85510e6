"""A small character-level LM trained data-parallel with everything a resume must restore:
Adam's moments, per-rank dropout streams and the LSTM state carried across TBPTT windows.

    python resume.py OUT STEPS [--save-at K CKPT] [--die-at J] [--resume CKPT]

Rank r writes OUT/rank{r}.npz (final parameters, the loss of every step it ran, its first
dropout mask). `--save-at K CKPT`: rank 0 writes a checkpoint after K steps. `--die-at J`: rank 1
kills itself with SIGKILL at the start of step J (mpiexec then ends the run). `--resume CKPT`:
every rank continues from rank 0's checkpoint.
"""
import argparse
import os
import signal

import numpy as np

import minigrad as mg
import rnn

V, E, H, B, K = 12, 6, 10, 8, 5  # vocabulary, embedding, hidden, streams (all ranks), window


class LM(mg.nn.Module):
    def __init__(self, rng):
        super().__init__()
        self.embed = mg.nn.Embedding(V, E, rng=rng)
        self.drop = mg.nn.Dropout(0.3)
        self.cell = rnn.LSTMCell(E, H, rng=rng)
        self.head = mg.nn.Linear(H, V, rng=rng)

    def forward(self, tokens, state):
        out, state = rnn.unroll(self.cell, self.drop(self.embed(tokens)), state)
        return self.head(self.drop(out)), state


p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("steps", type=int)
p.add_argument("--save-at", nargs=2)
p.add_argument("--die-at", type=int)
p.add_argument("--resume")
args = p.parse_args()

group = mg.distributed.init()
mg.manual_seed(mg.distributed.rank_seed(7, group.rank))
probe = mg.random.get_state()  # this rank's first dropout mask, drawn and then rewound
first_mask = mg.dropout(mg.ones(32), 0.5).numpy() != 0
mg.random.set_state(probe)

ids = np.random.default_rng(0).integers(0, V, size=4000)
streams = ids.reshape(B, -1).T                                  # (L, B): B streams of text
local = streams[:, mg.distributed.shard(B, group.rank, group.size)]

model = LM(np.random.default_rng(3))
dp = mg.distributed.DataParallel(model)
params = model.parameters()
opt = mg.optim.Adam(params, lr=0.02)
start, state = 0, None
if args.resume:
    ckpt = mg.distributed.load(args.resume)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    mg.random.set_state(ckpt["random"][group.rank])
    state = tuple(mg.tensor(a) for a in ckpt["carry"][group.rank])
    start = ckpt["step"]

losses = {}
for step in range(start, args.steps):
    if step == args.die_at and group.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    t = step * K
    x, y = local[t:t + K], local[t + 1:t + K + 1]
    if state is not None:
        state = tuple(s.detach() for s in state)
    logits, state = model(x, state)
    loss = rnn.sequence_cross_entropy(logits, y)
    opt.zero_grad()
    loss.backward()
    dp.average_gradients()
    mg.nn.utils.clip_grad_norm_(params, 0.5)
    opt.step()
    losses[str(step)] = float(loss.item())
    if args.save_at and step + 1 == int(args.save_at[0]):
        mg.distributed.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                             "step": step + 1,
                             "random": group.gather_object(mg.random.get_state()),
                             "carry": group.gather_object([s.numpy() for s in state])},
                            args.save_at[1])

mg.save({"params": model.state_dict(), "losses": losses, "first_mask": first_mask},
        os.path.join(args.out, f"rank{group.rank}.npz"))
