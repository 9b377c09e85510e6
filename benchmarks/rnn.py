"""LSTM and MUT1 forward + full BPTT: every way minigrad runs them against NumPy by hand,
PyTorch and JAX, each at its best settings, on one thread and on all the machine's cores.

Run from the repository root (see benchmarks/README.md for why the two variables are unset):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.rnn [--configs a,c,d]
        [--threads 1,2] [--repeat N] [--quick] [--rows KEY,...] [--gru] [--no-memory]
        [--profile CONFIG]

One call of a row is one training step's autodiff: float32 time-major x (T, B, I) (the input
requires grad), zero initial state, loss = sum of all outputs, gradients for x and every
weight. For each thread count a fresh child process times every row of a config side by side
(round robin after warm-up, the order rotated every round, a 0.2 s pause after every timed call
so no row runs against the previous one's spinning worker threads), with every library at its
default threading policy: "1" limits OpenBLAS, OpenMP (PyTorch), numba and XLA (JAX) to one
thread through their environment variables before they start; the machine's core count leaves
them all at their defaults. Then one fresh process per row and config (one thread) measures
the first call (tracing, compiling and the call itself) and the peak memory of a training step
(`peak_memory` says how). The summary gives each row's median time relative to minigrad's fused
`rnn.LSTMCell` (the ratio of minima in brackets) at both thread counts, and a targets block
(issue 21) marking each target held or missed.

Rows (`--rows` picks some by key, with the yardstick of their table, the fused LSTM or GRU):
minigrad's fused LSTM; the hand-written NumPy BPTT (benchmarks/numpy_ref.py); an LSTM and the
README's MUT1 written by a user as `rnn.Cell` subclasses (benchmarks/user_cells.py), each on the
per-op graph (`rnn.compiling("off")`) and compiled ("numpy" when numba is installed, and the
default "auto"); PyTorch's `nn.LSTM`, the user's LSTM step in an eager loop and as a TorchScript
loop; JAX's `lax.scan` + `jit` + `grad` of the LSTM and of MUT1. With `--gru`, a second table:
the fused and composed GRU (reset-after), NumPy by hand and `nn.GRU`, relative to the fused GRU.
A row whose library or API is missing is skipped with the reason printed.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from benchmarks._timing import machine_line, settle

CONFIGS = {  # name: (B, I, H, T)
    "a": (32, 128, 256, 100),
    "b": (64, 256, 512, 50),
    "c": (1, 32, 64, 200),
    "d": (16, 64, 128, 1000),
}
TARGET_CONFIGS = "acd"
FIRST_CALL_LIMIT = 2.0  # seconds, for every compiled minigrad row
MEMORY_LIMIT = 8        # (B, H) arrays per step that full BPTT of the fused LSTM may hold
MINIGRAD_LSTM_ROWS = ("fused", "lstm-off", "lstm-numpy", "lstm-auto")
COMPILED_MINIGRAD_ROWS = ("lstm-numpy", "lstm-auto", "mut1-numpy", "mut1-auto")

# environment of the one-thread child: every library's own switch, set before it starts
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "NUMBA_NUM_THREADS": "1"}
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


class Skip(Exception):
    """A row that cannot run here (library or API missing); the message says why."""


# ---------------------------------------------------------------------------------------
# rows: each builds a zero-argument callable for one config
# ---------------------------------------------------------------------------------------

@dataclass
class Row:
    key: str            # names the row on the command line and in the JSON
    label: str          # what the tables print
    group: str          # "lstm" (relative to the fused LSTM) or "gru" (to the fused GRU)
    make: Callable      # (B, I, H, T) -> zero-argument callable; raises Skip
    settle_calls: int = 0    # untimed calls after the first, before the warm-up rounds


def inputs(B, I, H, T, gates=4, seed=0):
    """x (T, B, I) and PyTorch-style weights (G H, I), (G H, H), (G H,), (G H,), float32."""
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(H)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    return x, [rng.uniform(-k, k, s).astype(np.float32) for s in
               [(gates * H, I), (gates * H, H), (gates * H,), (gates * H,)]]


def minigrad_step(cell, x_np, mode="default"):
    """One forward + backward of `rnn.unroll(cell, x)` in compiling `mode`, as a callable.
    `step(tracker)` also records `tracker.live_bytes` after the forward pass (what the graph
    holds for backward) in `step.held_bytes`."""
    import minigrad as mg
    import rnn
    from benchmarks.user_cells import run_mode
    x = mg.tensor(x_np, requires_grad=True)
    params = list(cell.parameters())

    def step(tracker=None):
        for p in params:
            p.grad = None
        x.grad = None
        with run_mode(mode):
            out, _ = rnn.unroll(cell, x)
            loss = out.sum()
            if tracker is not None:
                step.held_bytes = tracker.live_bytes
            loss.backward()

    def report():
        """The first line of `rnn.compile_report` for this cell and input (after the first
        call, so that the report's own tracing never counts as the first call's)."""
        if mode in ("default", "off") or not hasattr(rnn, "compile_report"):
            return ""
        with contextlib.suppress(Exception), run_mode(mode):
            return rnn.compile_report(cell, x).strip().splitlines()[0]
        return "rnn.compile_report failed"

    step.held_bytes = None
    step.report = report
    return step


def _user_cell_row(cell_class, mode):
    def make(B, I, H, T):
        from benchmarks.user_cells import compiling_modes, numba_available
        modes, why = compiling_modes()
        if modes is None and mode != "off":
            raise Skip(why)
        if mode == "numpy" and not numba_available():
            raise Skip('"numpy" is what "auto" runs when numba is not installed')
        cell = cell_class(I, H, rng=0, dtype="float32")
        # without rnn.compiling the per-op graph is the only path: run it as configured
        return minigrad_step(cell, inputs(B, I, H, T)[0], mode if modes else "default")
    return make


def _fused_lstm(B, I, H, T):
    import rnn
    return minigrad_step(rnn.LSTMCell(I, H, rng=0, dtype="float32"), inputs(B, I, H, T)[0])


def _gru(fused):
    def make(B, I, H, T):
        import rnn
        cell = rnn.GRUCell(I, H, reset_after=True, fused=fused, rng=0, dtype="float32")
        return minigrad_step(cell, inputs(B, I, H, T)[0])
    return make


def _numpy_lstm(B, I, H, T):
    from benchmarks.numpy_ref import lstm_forward_backward
    x, (w_ih, w_hh, b_ih, _) = inputs(B, I, H, T)
    return lambda: lstm_forward_backward(x, w_ih, w_hh, b_ih)


def _numpy_gru(B, I, H, T):
    from benchmarks.numpy_ref import gru_forward_backward
    x, (w_ih, w_hh, b_ih, b_hh) = inputs(B, I, H, T, gates=3)
    return lambda: gru_forward_backward(x, w_ih, w_hh, b_ih, b_hh, reset_after=True)


def _torch(name):
    def make(B, I, H, T):
        from benchmarks import torch_ref
        if not torch_ref.available():
            raise Skip("PyTorch is not installed")
        try:
            return getattr(torch_ref, name)(B, I, H, T)
        except Exception as e:  # TorchScript may refuse the loop in some torch version
            raise Skip(f"{name} failed: {type(e).__name__}: {e}") from None
    return make


def _jax(name):
    def make(B, I, H, T):
        from benchmarks import jax_ref
        if not jax_ref.available():
            raise Skip("JAX is not installed")
        return getattr(jax_ref, name)(B, I, H, T)
    return make


def _rows():
    from benchmarks.user_cells import UserLSTM, UserMUT1
    # compiled minigrad rows: numba's executor compiles a program at its first run; three
    # untimed calls after the first all the same (as for every compiler row)
    return [
        Row("fused", "minigrad fused rnn.LSTMCell", "lstm", _fused_lstm),
        Row("numpy", "NumPy by hand (numpy_ref)", "lstm", _numpy_lstm),
        Row("lstm-off", "minigrad user LSTM, per-op graph", "lstm",
            _user_cell_row(UserLSTM, "off")),
        Row("lstm-numpy", "minigrad user LSTM, compiled numpy", "lstm",
            _user_cell_row(UserLSTM, "numpy"), settle_calls=3),
        Row("lstm-auto", "minigrad user LSTM, compiled auto", "lstm",
            _user_cell_row(UserLSTM, "auto"), settle_calls=3),
        Row("mut1-off", "minigrad MUT1, per-op graph", "lstm", _user_cell_row(UserMUT1, "off")),
        Row("mut1-numpy", "minigrad MUT1, compiled numpy", "lstm",
            _user_cell_row(UserMUT1, "numpy"), settle_calls=3),
        Row("mut1-auto", "minigrad MUT1, compiled auto", "lstm",
            _user_cell_row(UserMUT1, "auto"), settle_calls=3),
        Row("torch", "PyTorch nn.LSTM", "lstm", _torch("make_lstm")),
        Row("torch-loop", "PyTorch user LSTM, eager loop", "lstm", _torch("make_user_lstm_loop")),
        # TorchScript's profiling executor optimises the graph only after a few calls
        Row("torchscript", "TorchScript user LSTM, whole loop", "lstm",
            _torch("make_torchscript_lstm"), settle_calls=5),
        Row("jax", "JAX LSTM scan+jit+grad", "lstm", _jax("make_lstm")),
        Row("jax-mut1", "JAX MUT1 scan+jit+grad", "lstm", _jax("make_mut1")),
        Row("gru-fused", "minigrad fused rnn.GRUCell", "gru", _gru(True)),
        Row("gru-composed", "minigrad GRUCell(fused=False)", "gru", _gru(False)),
        Row("gru-numpy", "NumPy by hand (numpy_ref)", "gru", _numpy_gru),
        Row("gru-torch", "PyTorch nn.GRU", "gru", _torch("make_gru")),
    ]


BASE = {"lstm": "fused", "gru": "gru-fused"}


def pick_rows(keys=None, gru=False):
    """The rows to run: `keys` (plus the yardsticks) or every LSTM/MUT1 row (and the GRU's)."""
    rows = _rows()
    known = {r.key for r in rows}
    if keys:
        unknown = sorted(set(keys) - known)
        if unknown:
            raise ValueError(f"benchmarks.rnn: unknown row(s) {unknown}; choose from "
                             f"{sorted(known)}")
        wanted = set(keys) | {BASE[r.group] for r in rows if r.key in keys}
        return [r for r in rows if r.key in wanted]
    return [r for r in rows if r.group == "lstm" or gru]


# ---------------------------------------------------------------------------------------
# timing (inside one child process per thread count)
# ---------------------------------------------------------------------------------------

def side_by_side(fns, warmup, repeat, pause=0.2):
    """Seconds per call of each callable, timed round robin (one call each per round, the order
    rotated every round so that no row always follows the same one) after `warmup` rounds."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    names = list(fns)
    times = {k: [] for k in fns}
    for r in range(repeat):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
            # every library keeps its default threading policy (OpenMP and OpenBLAS workers
            # spin for a while after a call): let them sleep before the next row
            settle(pause)
    return times


def build(rows, B, I, H, T):
    """{key: callable} of the rows that run here, {key: reason} of those skipped, and the
    first call's seconds of each (in this process; `measure_row` times it in a fresh one)."""
    fns, skipped, first, notes = {}, {}, {}, {}
    for row in rows:
        try:
            fn = row.make(B, I, H, T)
            t0 = time.perf_counter()
            fn()
            first[row.key] = time.perf_counter() - t0
            for _ in range(row.settle_calls):
                fn()
        except Skip as e:
            skipped[row.key] = str(e)
            continue
        except Exception as e:  # a row that breaks must not take the others with it
            skipped[row.key] = f"failed: {type(e).__name__}: {e}"
            continue
        fns[row.key] = fn
        note = fn.report() if hasattr(fn, "report") else ""
        if note:
            notes[row.key] = note
    return fns, skipped, first, notes


def time_configs(rows, configs, warmup, repeat):
    """Time every row of every config; prints each config's table as it is measured and returns
    {config: {"times": {key: [s, ...]}, "skipped": ..., "first_in_process": ..., "notes": ...}}."""
    out = {}
    labels = {r.key: r.label for r in rows}
    for name in configs:
        B, I, H, T = CONFIGS[name]
        result = {"times": {}, "skipped": {}, "first_in_process": {}, "notes": {}}
        for group in BASE:
            group_rows = [r for r in rows if r.group == group]
            if not group_rows:
                continue
            fns, skipped, first, notes = build(group_rows, B, I, H, T)
            times = side_by_side(fns, warmup, repeat)
            del fns
            gc.collect()
            for part, value in (("times", times), ("skipped", skipped),
                                ("first_in_process", first), ("notes", notes)):
                result[part].update(value)
            print_times(name, group, times, skipped, labels)
        out[name] = result
    return out


def print_times(name, group, times, skipped, labels):
    base = times.get(BASE[group])
    print(f"\n{name} (B, I, H, T) = {CONFIGS[name]}, {group.upper()} rows")
    print(f"  {'row':38}{'median ms':>10}{'min-max ms':>20}{'/ base':>8}{'(min)':>8}")
    for key, t in times.items():
        med, lo, hi = statistics.median(t), min(t), max(t)
        rel = (f"{med / statistics.median(base):7.2f}x{lo / min(base):7.2f}x" if base
               else "")
        print(f"  {labels[key]:38}{med * 1e3:10.2f}{f'{lo * 1e3:.2f}-{hi * 1e3:.2f}':>20} {rel}")
    for key, why in skipped.items():
        print(f"  {labels[key]:38}skipped: {why}")


# ---------------------------------------------------------------------------------------
# first call and memory (one fresh process per row and config)
# ---------------------------------------------------------------------------------------

def _proc_status():
    """Resident set size now and its high-water mark, in bytes (Linux /proc)."""
    values = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


def _release_free_memory():
    """Collect garbage and ask glibc to return its free heap pages (`malloc_trim`), so that the
    resident set counts what is live rather than what the allocator keeps for later."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak():
    """Start the high-water mark again from now (Linux 4.0+: write 5 to clear_refs)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


FIRST_CALLS = 5  # calls whose times are reported: a compiler may start at a later call


def peak_memory(fn, first_calls=FIRST_CALLS):
    """What one row's training step costs the first time and occupies, measured in this (fresh)
    process:

    - `first_s`: seconds of the first call (tracing and compiling included);
    - `worst_s`: the slowest of the first `first_calls` calls, where a compiler that starts only
      after some calls (TorchScript's profiling executor optimises after two; minigrad's numba
      executor compiles at the first) pays; `first_times`: all of them;
    - `peak_bytes`: the resident set's high-water mark during the next call, minus the resident
      set before the first call (after the libraries, the inputs and the weights were loaded).
      It counts everything the step touches, whichever library allocates it: what autodiff
      keeps for backward, temporaries, gradients, and what the first calls left behind
      (compiled code, cached work arrays), but not the transient memory of compiling. glibc is
      told (`MALLOC_MMAP_THRESHOLD_`, set by the parent) to hand large blocks back when freed,
      and its free heap pages are returned (`malloc_trim`) before each baseline is read, so the
      resident set follows what is live instead of what the allocator keeps;
    - `kept_bytes`: of that, what was resident before that call: what the first calls left
      behind (compiled code and the compiler's caches, cached work arrays, gradients);
    - `first_peak_bytes`: the high-water mark over the first calls (compiling included), minus
      the same baseline.
    """
    _release_free_memory()
    rss0, _ = _proc_status()
    _reset_peak()
    times = []
    for _ in range(first_calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    _, hwm_first = _proc_status()
    _release_free_memory()
    rss1, _ = _proc_status()
    _reset_peak()
    fn()
    _, hwm = _proc_status()
    return {"first_s": times[0], "worst_s": max(times), "first_times": times,
            "peak_bytes": hwm - rss0, "kept_bytes": rss1 - rss0,
            "first_peak_bytes": hwm_first - rss0}


def measure_row(key, config):
    """First call, peak memory and (minigrad rows) the graph's bytes held for backward."""
    row = next(r for r in _rows() if r.key == key)
    B, I, H, T = CONFIGS[config]
    try:
        fn = row.make(B, I, H, T)
    except Skip as e:
        return {"skipped": str(e)}
    try:
        result = peak_memory(fn)
    except Exception as e:
        return {"skipped": f"failed: {type(e).__name__}: {e}"}
    if hasattr(fn, "held_bytes"):
        import minigrad as mg
        with mg.memory.track() as tracker:
            fn(tracker)
        result["held_bytes"] = fn.held_bytes
        result["graph_peak_bytes"] = tracker.peak_bytes
    return result


def child_env(threads):
    """The environment of a child process running on `threads` threads (None: all cores, every
    library's default)."""
    env = dict(os.environ)
    xla = env.get("XLA_FLAGS", "").replace(XLA_ONE_THREAD, "").strip()
    for var in ONE_THREAD_ENV:
        env.pop(var, None)
    if threads == 1:
        env.update(ONE_THREAD_ENV)
        xla = f"{xla} {XLA_ONE_THREAD}".strip()
    elif threads is not None:
        for var in ONE_THREAD_ENV:
            env[var] = str(threads)
    if xla:
        env["XLA_FLAGS"] = xla
    else:
        env.pop("XLA_FLAGS", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run_child(args, env, json_path, capture=False):
    cmd = [sys.executable, "-m", "benchmarks.rnn", *args, "--json", json_path]
    proc = subprocess.run(cmd, env=env, capture_output=capture, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or "")[-2000:] if capture else ""
        raise RuntimeError(f"benchmarks.rnn child {args} exited with {proc.returncode}\n{tail}")
    with open(json_path) as fh:
        return json.load(fh)


def measure_memory(rows, configs, tmp):
    """{config: {key: measure_row's result}}, one fresh one-thread process per row."""
    env = child_env(1)
    env["MALLOC_MMAP_THRESHOLD_"] = str(1 << 17)
    out = {}
    for name in configs:
        out[name] = {}
        for row in rows:
            path = os.path.join(tmp, f"mem-{name}-{row.key}.json")
            try:
                out[name][row.key] = _run_child(["--measure-row", row.key, "--config", name],
                                                env, path, capture=True)
            except RuntimeError as e:  # one row's crash must not lose the timings
                out[name][row.key] = {"skipped": str(e).strip().splitlines()[-1]}
        print(f"  memory and first calls of config {name}: done", flush=True)
    return out


# ---------------------------------------------------------------------------------------
# summary and targets (in the parent)
# ---------------------------------------------------------------------------------------

def _ratios(result, key, base):
    """(median ratio, min ratio, median seconds) of row `key` to `base`, or None."""
    t, b = result["times"].get(key), result["times"].get(base)
    if not t or not b:
        return None
    return statistics.median(t) / statistics.median(b), min(t) / min(b), statistics.median(t)


def print_summary(rows, configs, runs, memory):
    """One table per config: each thread count's ratios, then first call and memory."""
    counts = list(runs)
    shown = {}
    print("\n" + "=" * 100)
    print("summary: time relative to the fused row of the same size (median of the interleaved "
          "rounds; ratio of minima in brackets)")
    if memory:
        print(f"first s: the first call in a fresh one-thread process (tracing and compiling "
              f"included); worst s: the slowest of its first {FIRST_CALLS} calls (a compiler may "
              "start at a later call); peak MiB: resident set's high-water mark during a warm "
              "training step above the process before its first call; kept: of it, what the "
              "first calls left resident (compiled code, caches, gradients); graph MiB: "
              "mg.memory's peak of what minigrad's graph holds")
    for name in configs:
        print(f"\n{name} (B, I, H, T) = {CONFIGS[name]}")
        head = "".join(f"{f'{n} thread(s): ms  ratio (min)':>32}" for n in counts)
        print(f"  {'row':38}{head}{'first s':>9}{'worst s':>9}{'peak MiB':>10}{'kept':>7}"
              f"{'graph MiB':>10}")
        for row in rows:
            cells = ""
            for n in counts:
                r = _ratios(runs[n][name], row.key, BASE[row.group])
                cells += (f"{r[2] * 1e3:>14.2f}{r[0]:>9.2f}x ({r[1]:.2f})" if r
                          else f"{'-':>32}")
            m = (memory or {}).get(name, {}).get(row.key, {})
            if all(row.key not in runs[n][name]["times"] for n in counts):
                why = runs[counts[0]][name]["skipped"].get(row.key) or m.get("skipped", "")
                print(f"  {row.label:38}skipped: {why}")
                continue
            first = (f"{m['first_s']:9.2f}{m.get('worst_s', m['first_s']):9.2f}" if "first_s" in m
                     else f"{'-':>9}{'-':>9}")
            peak = (f"{m['peak_bytes'] / 2 ** 20:10.1f}{m['kept_bytes'] / 2 ** 20:7.1f}"
                    if "peak_bytes" in m else f"{'-':>10}{'-':>7}")
            graph = (f"{m['graph_peak_bytes'] / 2 ** 20:10.1f}" if m.get("graph_peak_bytes")
                     is not None else f"{'-':>10}")
            print(f"  {row.label:38}{cells}{first}{peak}{graph}")
            if "skipped" in m:
                print(f"    {row.key}: first calls and memory not measured: {m['skipped']}")
        for key, note in runs[counts[0]][name]["notes"].items():
            if shown.get(key) != note:  # say which path a compiled row took once
                print(f"    {key}: {note}")
                shown[key] = note


def targets(runs, memory):
    """[(target text, config, {threads: (value text, held)})] for issue 21's targets."""
    out = []
    for name in TARGET_CONFIGS:
        if not all(name in run for run in runs.values()):
            continue
        for key, what in (("lstm-auto", "user LSTM compiled (auto)"),
                          ("mut1-auto", "MUT1 compiled (auto)")):
            out.append((f"{what} <= 1.3x fused LSTM", name,
                        {n: _ratio_check(runs[n][name], key, "fused", 1.3) for n in runs}))
        for key, what in (("torch", "nn.LSTM"), ("jax", "JAX LSTM")):
            out.append((f"minigrad best LSTM path <= 1.0x {what}", name,
                        {n: _best_check(runs[n][name], key) for n in runs}))
        firsts = {key: m.get("worst_s", m.get("first_s"))
                  for key, m in (memory or {}).get(name, {}).items()
                  if key in COMPILED_MINIGRAD_ROWS and "first_s" in m}
        if firsts:
            slowest = max(firsts, key=firsts.get)
            value = (f"{firsts[slowest]:.2f} s {slowest}", firsts[slowest] < FIRST_CALL_LIMIT)
            out.append((f"first calls (tracing, compiling) of compiled rows < "
                        f"{FIRST_CALL_LIMIT:g} s", name, {n: value for n in runs}))
        fused = (memory or {}).get(name, {}).get("fused", {}).get("held_bytes")
        if name == "d" and fused:
            B, _, H, T = CONFIGS[name]
            per_step = fused / (T * B * H * 4)
            value = (f"{per_step:.2f} arrays", per_step <= MEMORY_LIMIT)
            out.append((f"fused LSTM BPTT holds <= {MEMORY_LIMIT} (B, H) arrays/step (mg.memory)",
                        name, {n: value for n in runs}))
    return out


def _ratio_check(result, key, base, limit):
    r = _ratios(result, key, base)
    if r is None:
        return "not measured", None
    return f"{r[0]:.2f} ({r[1]:.2f})", r[0] <= limit





def _best_check(result, other):
    """minigrad's fastest LSTM row (by median) against `other`."""
    times = result["times"]
    mine = [k for k in MINIGRAD_LSTM_ROWS if k in times]
    if other not in times or not mine:
        return "not measured", None
    best = min(mine, key=lambda k: statistics.median(times[k]))
    r = _ratios(result, best, other)
    return f"{r[0]:.2f} ({r[1]:.2f}) {best}", r[0] <= 1.0


def print_targets(runs, memory):
    counts = list(runs)
    print("\ntargets (issue 21): ratio of medians in the same run (ratio of minima in brackets); "
          "first calls and memory from the fresh one-thread processes")
    head = "".join(f"{f'{n} thread(s)':>34}" for n in counts)
    print(f"  {'target':62}{'cfg':4}{head}")
    for text, name, by_count in targets(runs, memory):
        cells = ""
        for n in counts:
            value, held = by_count[n]
            mark = "-" if held is None else ("held" if held else "MISSED")
            cells += f"{value:>27} {mark:>6}"
        print(f"  {text:62}{name:4}{cells}")


def print_markdown(rows, configs, runs, memory):
    """The summary as Markdown tables, ready for README.md and docs/performance.md: median
    ratios to the fused row per config (one thread / all cores), the first call and the slowest
    of the first calls, and peak memory at the last config, then the targets."""
    counts = list(runs)
    last = configs[-1]
    print("\nMarkdown (README.md's speed table and docs/performance.md):\n")
    head = " | ".join(f"{n} {str(CONFIGS[n]).replace(' ', '')}" for n in configs)
    print(f"| time / fused ({' / '.join(f'{n} thr' for n in counts)}) | {head} | "
          f"first calls at {last} (s) | peak at {last} (MiB) |")
    print("|---" * (len(configs) + 3) + "|")
    for row in rows:
        cells = []
        for name in configs:
            ratios = [_ratios(runs[n][name], row.key, BASE[row.group]) for n in counts]
            cells.append(" / ".join("-" if r is None else f"{r[0]:.2f}" for r in ratios))
        if all(c.strip("/ -") == "" for c in cells):
            continue  # skipped everywhere
        m = (memory or {}).get(last, {}).get(row.key, {})
        first = (f"{m['first_s']:.2f}, {m.get('worst_s', m['first_s']):.2f}" if "first_s" in m
                 else "-")
        peak = f"{m['peak_bytes'] / 2 ** 20:.0f}" if "peak_bytes" in m else "-"
        print(f"| {row.label} | {' | '.join(cells)} | {first} | {peak} |")
    print(f"\n| target | config | {' | '.join(f'{n} thread(s)' for n in counts)} |")
    print("|---" * (2 + len(counts)) + "|")
    for text, name, by_count in targets(runs, memory):
        cells = [f"{value} {'-' if held is None else ('held' if held else '**missed**')}"
                 for value, held in (by_count[n] for n in counts)]
        print(f"| {text} | {name} | {' | '.join(cells)} |")


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------

def profile(name, top=12):
    """cProfile of one training step of the fused LSTM and of the user's LSTM at config `name`."""
    import cProfile
    import pstats
    B, I, H, T = CONFIGS[name]
    for row in pick_rows(["fused", "lstm-off", "lstm-auto"]):
        try:
            fn = row.make(B, I, H, T)
        except Skip as e:
            print(f"--- {row.label}: skipped: {e}")
            continue
        fn()
        prof = cProfile.Profile()
        prof.runcall(fn)
        print(f"--- {row.label}, config {name} {(B, I, H, T)}: top {top} by own time")
        pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def parse_threads(text):
    cores = os.cpu_count() or 1
    counts = []
    for part in text.split(","):
        n = cores if part.strip() in ("all", "cores") else int(part)
        if n < 1:
            raise ValueError(f"benchmarks.rnn: thread counts must be >= 1, got {n}")
        if n not in counts:
            counts.append(n)
    return counts


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.rnn",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help=f"comma-separated subset of {','.join(CONFIGS)} (default: all)")
    ap.add_argument("--threads", default="1,all",
                    help="thread counts, each timed in its own fresh process ('all' = the "
                         "machine's cores; default 1,all)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed rounds per config (default 7, or 3 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 warm-up round and 3 timed ones, no memory processes")
    ap.add_argument("--rows", default=None, help="comma-separated row keys (default: all)")
    ap.add_argument("--gru", action="store_true", help="also the GRU table")
    ap.add_argument("--no-memory", action="store_true",
                    help="skip the fresh processes measuring first calls and memory")
    ap.add_argument("--profile", metavar="CONFIG", help="profile one training step instead")
    ap.add_argument("--save", metavar="PATH", help="also write every measurement as JSON")
    ap.add_argument("--load", metavar="PATH",
                    help="print the summary, targets and Markdown of a --save file again")
    ap.add_argument("--json", help=argparse.SUPPRESS)           # a child's results file
    ap.add_argument("--child-threads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--measure-row", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # rows appear as they are measured

    if args.measure_row:
        with open(args.json, "w") as fh:
            json.dump(measure_row(args.measure_row, args.config), fh)
        return None
    if args.profile:
        if args.threads != ap.get_default("threads"):
            import minigrad as mg
            mg.set_num_threads(parse_threads(args.threads)[0])  # BLAS, in this process
        profile(args.profile)
        return None
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown config(s) {unknown}; choose from {list(CONFIGS)}")
    try:
        rows = pick_rows(args.rows.split(",") if args.rows else None, gru=args.gru)
        counts = parse_threads(args.threads)
    except ValueError as e:
        ap.error(str(e))
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 7)
    warmup = 1 if args.quick else 2

    if args.load:
        with open(args.load) as fh:
            saved = json.load(fh)
        print(saved["machine"])
        configs = saved["configs"]
        rows = pick_rows(saved["rows"])
        runs = {int(n): run for n, run in saved["runs"].items()}
        report(rows, configs, runs, saved["memory"])
        return runs, saved["memory"]
    if args.child_threads is not None:
        print(f"--- {args.child_threads} thread(s): {machine_line()}")
        result = time_configs(rows, configs, warmup, repeat)
        with open(args.json, "w") as fh:
            json.dump(result, fh)
        return None

    print(machine_line())
    print("load average at start: %.1f %.1f %.1f (1, 5, 15 min)" % os.getloadavg())
    print(f"{repeat} timed rounds after {warmup} warm-up, rows interleaved; thread counts "
          f"{counts}, each in a fresh process")
    runs = {}
    with tempfile.TemporaryDirectory(prefix="benchmarks-rnn-") as tmp:
        for n in counts:
            child = ["--child-threads", str(n), "--configs", ",".join(configs),
                     "--repeat", str(repeat), "--threads", str(n)]
            child += ["--rows", ",".join(r.key for r in rows)]
            if args.quick:
                child.append("--quick")
            cores = n if n != os.cpu_count() else None  # None: every library's default
            runs[n] = _run_child(child, child_env(cores),
                                 os.path.join(tmp, f"times-{n}.json"))
        memory = None
        if not (args.quick or args.no_memory):
            print("\nfirst calls and peak memory: one fresh process per row and config, "
                  "one thread")
            memory = measure_memory(rows, configs, tmp)
    report(rows, configs, runs, memory)
    print("load average at end: %.1f %.1f %.1f" % os.getloadavg())
    if args.save:
        with open(args.save, "w") as fh:
            json.dump({"machine": machine_line(), "configs": configs,
                       "rows": [r.key for r in rows], "runs": runs, "memory": memory}, fh)
    return runs, memory


def report(rows, configs, runs, memory):
    print_summary(rows, configs, runs, memory)
    print_targets(runs, memory)
    print_markdown(rows, configs, runs, memory)


if __name__ == "__main__":
    main()
