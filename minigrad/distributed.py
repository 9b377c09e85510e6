"""Data-parallel training over MPI: one replica of the model per process, one shard of the batch
each, and an allreduce that averages the gradients before every optimizer step.

    group = mg.distributed.init()             # rank, size: the MPI world, or a group of one
    dp = mg.distributed.DataParallel(model)   # rank 0's parameters and buffers on every rank
    ...
    loss.backward()                           # the gradient of this rank's shard
    dp.average_gradients()                    # the mean over ranks: the whole batch's gradient
    mg.nn.utils.clip_grad_norm_(params, 1.0)  # clips the averaged gradient, the same everywhere
    opt.step()

With a mean loss and equal shards, the average of the ranks' gradients is the gradient of the
whole batch, so N processes on shards take the steps one process takes on the whole batch (up to
float round-off). Every rank then holds the same gradient, so clipping, the non-finite guard
(`mg.optim.SkipNonFinite`: a NaN on one rank is a NaN in the sum, so every rank skips) and any
optimizer stay in step with no further communication.

MPI comes from `mpi4py` (`pip install "minigrad[dist]"`, which brings Open MPI as a wheel) and is
touched only in a process started by an MPI launcher (`mpiexec -n 2 python train.py`): a plain
process is a group of one, where every collective returns its input, and never imports mpi4py.

Collectives are calls every rank must make, in the same order: a rank that skips one (a branch on
its own data, a different number of windows) leaves the others waiting for ever.
"""
from __future__ import annotations

import os
import time

import numpy as np

from minigrad import backend, serialization
from minigrad.tensor import Tensor

__all__ = ["DataParallel", "ProcessGroup", "init", "load", "rank_seed", "save", "shard"]

# Set by MPI launchers in every process they start (Open MPI, PMIx, Hydra/MPICH/Intel, MVAPICH).
LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


class ProcessGroup:
    """The processes that train together: `rank` in [0, size) and `size`, with the collectives
    data parallelism needs. Array collectives work in place on host NumPy arrays (and on CuPy
    arrays when `cuda_aware`); object collectives pickle small Python objects.

    `comm` is an mpi4py communicator, or None for a plain process (size 1), where every
    collective returns its input. `cuda_aware`: None asks MPI (`MPI.Query_cuda_support()`, when
    mpi4py offers it), a bool says it.
    """

    def __init__(self, comm=None, cuda_aware: bool | None = None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        if cuda_aware is None:
            query = None if comm is None else getattr(_mpi(), "Query_cuda_support", None)
            cuda_aware = bool(query()) if query is not None else False
        self.cuda_aware = bool(cuda_aware)

    def allreduce_(self, buf) -> None:
        """buf = the sum of every rank's buf, elementwise, in place (a contiguous array)."""
        if self.comm is not None and self.size > 1:
            self.comm.Allreduce(_mpi().IN_PLACE, buf, op=_mpi().SUM)

    def broadcast_(self, buf, root: int = 0) -> None:
        """buf = rank root's buf, in place on every rank."""
        if self.comm is not None and self.size > 1:
            self.comm.Bcast(buf, root=root)

    def broadcast_object(self, obj, root: int = 0):
        """Rank root's `obj` (pickled), returned on every rank."""
        return obj if self.comm is None else self.comm.bcast(obj, root=root)

    def gather_object(self, obj, root: int = 0) -> list | None:
        """On rank root, the list of every rank's `obj` in rank order; None elsewhere."""
        return [obj] if self.comm is None else self.comm.gather(obj, root=root)

    def allgather_object(self, obj) -> list:
        """The list of every rank's `obj`, in rank order, on every rank."""
        return [obj] if self.comm is None else self.comm.allgather(obj)

    def sum(self, value: float) -> float:
        """The sum of a number over the ranks (a loss, a count of tokens), on every rank."""
        buf = np.array([value], dtype=np.float64)
        self.allreduce_(buf)
        return float(buf[0])

    def barrier(self) -> None:
        """Return once every rank has called it."""
        if self.comm is not None:
            self.comm.Barrier()

    def __repr__(self):
        return f"ProcessGroup(rank={self.rank}, size={self.size})"


def _mpi():
    from mpi4py import MPI
    return MPI


_default_group: list[ProcessGroup | None] = [None]


def init(comm=None) -> ProcessGroup:
    """The process group of this run, made once and then returned again.

    In a process started by an MPI launcher (one of `LAUNCHER_VARIABLES` is set) it is MPI's
    world, read through mpi4py (RuntimeError when mpi4py is missing: N processes would otherwise
    each train alone); in a plain process it is a group of one (rank 0, size 1) and MPI is not
    touched. `comm`, an mpi4py communicator, replaces the group (e.g. a `Split` of the world).

    >>> import minigrad as mg
    >>> group = mg.distributed.init()
    >>> group.rank, group.size          # a plain process
    (0, 1)
    """
    if comm is not None:
        if not all(hasattr(comm, m) for m in ("Get_rank", "Get_size", "Allreduce", "bcast")):
            raise TypeError(f"init: comm must be an mpi4py communicator, got "
                            f"{type(comm).__name__}")
        _default_group[0] = ProcessGroup(comm)
    elif _default_group[0] is None:
        _default_group[0] = ProcessGroup(_launched_world())
    return _default_group[0]


def _launched_world():
    found = [v for v in LAUNCHER_VARIABLES if v in os.environ]
    if not found:
        return None
    try:
        return _mpi().COMM_WORLD
    except ImportError as e:
        raise RuntimeError(f"init: this process was started by an MPI launcher ({found[0]} is "
                           "set) but mpi4py is not installed: pip install 'minigrad[dist]'") from e


# --- data and seeds -------------------------------------------------------------------------------

def shard(n: int, rank: int, size: int, *, seed: int | None = None, epoch: int = 0,
          remainder: str = "drop") -> np.ndarray:
    """The indices (int64) of rank's part of an epoch of n examples: disjoint across ranks and
    the same on every call with the same arguments.

    The epoch's order is 0..n-1, or with `seed` a permutation drawn from (seed, epoch), the same
    on every rank. Rank r takes the r-th of `size` contiguous blocks of m indices, so all ranks
    get equally many (equal shards keep the mean of their mean losses equal to the whole batch's
    mean). `remainder` says what happens to the n % size left over:

    * "drop": m = n // size; the last n % size of the order are left out of this epoch (with a
      seed, other examples each epoch); every example is seen at most once.
    * "pad": m = ceil(n / size); the order is repeated from its start to fill m * size places,
      so every example is seen at least once (and, when n >= size, m * size - n of them twice).

    >>> import minigrad as mg
    >>> [mg.distributed.shard(10, r, 3).tolist() for r in range(3)]
    [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    >>> [mg.distributed.shard(10, r, 3, remainder="pad").tolist() for r in range(3)]
    [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]
    """
    for name, v, low in (("n", n, 0), ("size", size, 1), ("epoch", epoch, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"shard: {name} must be an int >= {low}, got {v!r}")
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < size:
        raise ValueError(f"shard: rank must be an int in [0, {size}), got {rank!r}")
    if remainder not in ("drop", "pad"):
        raise ValueError(f"shard: remainder must be 'drop' or 'pad', got {remainder!r}")
    order = np.arange(n, dtype=np.int64)
    if seed is not None:
        order = np.random.default_rng([int(seed), int(epoch)]).permutation(order)
    m = n // size if remainder == "drop" else -(-n // size)
    if remainder == "pad" and n:
        order = np.resize(order, m * size)  # repeats the order from its start
    return order[rank * m:(rank + 1) * m].copy()


def rank_seed(seed: int, rank: int) -> int:
    """Rank's own seed derived from the run's `seed`: a 128-bit int from NumPy's
    `SeedSequence(seed, spawn_key=(rank,))`, the stream `SeedSequence(seed).spawn(size)[rank]`.

    Seed minigrad's default generator with it (`mg.manual_seed(rank_seed(seed, rank))`) and
    dropout draws differ from rank to rank, yet the whole run is reproducible. Draws that must
    agree on every rank (initial weights, the epoch's order) come from `seed` itself, or from
    rank 0 through `DataParallel`'s broadcast.

    >>> import minigrad as mg
    >>> mg.distributed.rank_seed(0, 0) != mg.distributed.rank_seed(0, 1)
    True
    """
    for name, v in (("seed", seed), ("rank", rank)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"rank_seed: {name} must be an int >= 0, got {v!r}")
    words = np.random.SeedSequence(int(seed), spawn_key=(int(rank),)).generate_state(4, np.uint32)
    return int.from_bytes(words.astype("<u4").tobytes(), "little")


# --- checkpoints ----------------------------------------------------------------------------------

def save(obj, path, group: ProcessGroup | None = None) -> None:
    """Rank 0 writes `obj` to `path` with `mg.save` (atomic: the old file or the new one, never
    half); every rank returns once the file is complete, or raises if rank 0 failed.

    Per-rank state goes in as lists gathered to rank 0 (`group.gather_object`): e.g. each rank's
    random state, `mg.random.get_state()`, to resume dropout exactly.
    """
    group = group if group is not None else init()
    error = None
    if group.rank == 0:
        try:
            serialization.save(obj, path)
        except Exception as e:
            error = e
    failed = group.broadcast_object(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    if failed is not None:
        raise RuntimeError(f"save: rank 0 could not write {os.fspath(path)!r} ({failed})")


def load(path, group: ProcessGroup | None = None):
    """Rank 0 reads `path` with `mg.load` and sends the result to every rank, so the ranks need
    no shared filesystem. Errors (a missing or damaged file) are raised on every rank."""
    group = group if group is not None else init()
    reply = None
    if group.rank == 0:
        try:
            reply = ("ok", serialization.load(path))
        except Exception as e:
            reply = ("error", e)
    status, value = group.broadcast_object(reply)
    if status == "error":
        raise value
    return value


# --- gradients ------------------------------------------------------------------------------------

def _bucket_plan(keys: list, nbytes: list, limit: int) -> list[list[int]]:
    """Indices grouped into buckets: each bucket holds one key (dtype, device) and, in order,
    items up to `limit` bytes (an item larger than `limit` has a bucket of its own)."""
    open_buckets: dict = {}  # key -> (indices, bytes) of the bucket being filled
    done = []
    for i, (key, b) in enumerate(zip(keys, nbytes)):
        idx, total = open_buckets.get(key, ([], 0))
        if idx and total + b > limit:
            done.append(idx)
            idx, total = [], 0
        idx.append(i)
        open_buckets[key] = (idx, total + b)
    done += [idx for idx, _ in open_buckets.values()]
    return sorted(done, key=lambda idx: idx[0])


class DataParallel:
    """Keep the replicas of `module` on every rank of `group` identical: its parameters and
    buffers are rank 0's from the start, and `average_gradients()` makes every rank's `.grad`
    the mean over ranks.

    The gradients travel in a few flat buffers ("buckets", each of one dtype and device, of up
    to `bucket_bytes`) rather than one message per parameter: one allreduce costs a latency per
    message plus its bytes, and a model has many small parameters. A gradient that is None on
    every rank stays None; one that is None only on some ranks counts as zeros there.

    Device arrays (CuPy) are packed on the device and go through a host copy, or straight to MPI
    when the group is `cuda_aware`. Parameters are the ones that require a gradient when this is
    made. `allreduce_seconds` and `allreduce_bytes` add up the time in, and the bytes sent to,
    the allreduce calls (the wait for the slowest rank included).

    >>> import minigrad as mg
    >>> model = mg.nn.Linear(3, 2, rng=0)
    >>> dp = mg.distributed.DataParallel(model)       # in a plain process: a group of one
    >>> mg.mse_loss(model(mg.randn(4, 3)), mg.zeros(4, 2)).backward()
    >>> dp.average_gradients()                        # every rank now holds the mean gradient
    >>> dp.buckets
    [['weight', 'bias']]
    """

    def __init__(self, module, group: ProcessGroup | None = None, *,
                 bucket_bytes: int = 8 * 2**20):
        if not (hasattr(module, "named_parameters") and hasattr(module, "state_dict")):
            raise TypeError(f"DataParallel: expected a Module, got {type(module).__name__}")
        if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, (int, np.integer)) \
                or bucket_bytes < 1:
            raise ValueError(f"DataParallel: bucket_bytes must be an int >= 1, got "
                             f"{bucket_bytes!r}")
        self.module = module
        self.group = group if group is not None else init()
        self.bucket_bytes = int(bucket_bytes)
        self.named_params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.allreduce_seconds = 0.0
        self.allreduce_bytes = 0
        self._plan_key, self._plan = None, []
        self._check_same_model()
        self.broadcast_state()

    @property
    def buckets(self) -> list[list[str]]:
        """The parameter names in each bucket, in the order they are reduced."""
        return [[self.named_params[i][0] for i in idx] for idx in self._buckets()]

    def _check_same_model(self) -> None:
        tensors = list(self.module.named_parameters()) + list(self.module.named_buffers())
        layout = [(n, tuple(t.shape), str(t.dtype)) for n, t in tensors]
        layout.append(("(parameters that require grad)", tuple(n for n, _ in self.named_params)))
        layouts = self.group.allgather_object(layout)
        for r, other in enumerate(layouts):  # every rank sees every layout, so all raise together
            if other != layouts[0]:
                diff = next((a, b) for a, b in zip(layouts[0] + [None], other + [None]) if a != b)
                raise ValueError(f"DataParallel: rank {r}'s model differs from rank 0's "
                                 f"(first difference: rank 0 {diff[0]}, rank {r} {diff[1]}); "
                                 "every rank must build the same model")

    def broadcast_state(self, root: int = 0) -> None:
        """Copy rank root's parameters and buffers to every rank (done once when made)."""
        if self.group.size == 1:
            return
        state = self.module.state_dict()  # host copies, in the same order on every rank
        arrays = list(state.values())
        plan = _bucket_plan([a.dtype for a in arrays], [a.nbytes for a in arrays],
                            self.bucket_bytes)
        for idx in plan:
            flat = np.concatenate([arrays[i].reshape(-1) for i in idx])
            self.group.broadcast_(flat, root=root)
            offset = 0
            for i in idx:
                arrays[i] = flat[offset:offset + arrays[i].size].reshape(arrays[i].shape)
                offset += arrays[i].size
        if self.group.rank != root:
            self.module.load_state_dict(dict(zip(state, arrays)))

    def _buckets(self) -> list[list[int]]:
        # rebuilt when a parameter changed dtype or device (Module.to) since the last call
        key = tuple((p.dtype, backend.device_of(p.data).name) for _, p in self.named_params)
        if key != self._plan_key:
            self._plan = _bucket_plan(list(key), [p.data.nbytes for _, p in self.named_params],
                                      self.bucket_bytes)
            self._plan_key = key
        return self._plan

    def average_gradients(self) -> None:
        """Replace every rank's `.grad` by the mean over ranks of `.grad` (a collective: call it
        on every rank, after `backward()` and before clipping and `step()`)."""
        if self.group.size == 1:
            return
        for idx in self._buckets():
            self._average_bucket([self.named_params[i][1] for i in idx])

    def _average_bucket(self, params) -> None:
        dev = backend.device_of(params[0].data)
        xp, dtype = dev.xp, params[0].dtype
        sizes = [p.data.size for p in params]
        n = sum(sizes)
        # the gradients, then one "has a gradient" flag per parameter, summed with them
        flat = xp.empty(n + len(params), dtype=dtype)
        offset = 0
        for i, (p, k) in enumerate(zip(params, sizes)):
            if p.grad is None:
                flat[offset:offset + k] = 0
            else:
                flat[offset:offset + k] = p.grad.data.reshape(-1)
            flat[n + i] = p.grad is not None
            offset += k
        direct = dev.name == "cpu" or (self.group.cuda_aware and dev.name == "cuda")
        buf = flat if direct else backend.to_host(flat)
        if dev.name == "cuda" and direct:
            xp.cuda.get_current_stream().synchronize()  # MPI reads memory the stream still writes
        start = time.perf_counter()
        self.group.allreduce_(buf)
        self.allreduce_seconds += time.perf_counter() - start
        self.allreduce_bytes += buf.nbytes
        buf[:n] /= self.group.size
        counts = backend.to_host(buf[n:]) if direct else buf[n:]
        flat = buf if direct else backend.to_device(buf, dev)
        offset = 0
        for p, k, count in zip(params, sizes, counts.tolist()):
            if count:
                g = flat[offset:offset + k].reshape(p.shape)  # a view: no copy out
                if p.grad is None:
                    p.grad = Tensor(g)
                else:
                    p.grad.data = g
            offset += k

    def __repr__(self):
        return (f"DataParallel({type(self.module).__name__}, rank={self.group.rank}, "
                f"size={self.group.size}, buckets={len(self._buckets())})")
