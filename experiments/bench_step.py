r"""Train-step speed of rnnbench versus torch.nn and flax.linen, side by side, on CPU.

One train step = forward + backward + Adam update of an RNN encoder (batch-first input
[batch, time, 40]) and a linear head on the final hidden state of the last layer, with
softmax cross-entropy over 12 classes. Three implementations, each as its users write it:

  rnnbench  layers.build(cell, 40, H, num_layers=L) + nnx.Linear head + optax.adam, the whole
            step one jax.jit (params and optimizer state donated)
  torch     torch.nn.{LSTM,GRU,RNN} + nn.Linear + torch.optim.Adam, torch.set_num_threads(2)
  flax      flax.linen.RNN with the best stock cell (OptimizedLSTMCell, GRUCell, SimpleCell),
            L of them stacked, nn.Dense head, optax.adam, one jax.jit

The repeats are interleaved (rnnbench, torch, flax, rnnbench, ...) so machine drift hits all
three alike; we report medians, the ratio rnnbench/torch, and the achieved GFLOP/s against a
measured peak (a jitted 2048^3 f32 matmul, best of several). The FLOP count is the matmuls only:
a train step is counted as 3x the forward matmul FLOPs (forward, input gradient, weight gradient),
forward = 2*B*T*G*H*(F_in + H) per layer + the head. Elementwise work is not counted.

Shapes: S1 batch 64, T 101, 40 features, H 256, 1 layer;  S2 = S1 with 2 layers;
        S3 batch 32, T 1000, H 128, 1 layer.

Run (a few minutes on an idle 2-core machine; 29 min when the machine was 6x oversubscribed and
torch slowed down 10-50x -- see results/perf.md):

  python -m experiments.bench_step --shapes=S1,S2,S3 --cells=lstm,gru,rnn --repeats=15 \
      --out=results/bench_step.json
  python -m experiments.bench_step --breakdown --shapes=S1,S3 --repeats=10 \
      --out=results/bench_breakdown.json

Each JSON carries the provenance record (rnnbench/provenance.py: commit, machine, load average
at the start, versions); `python -m experiments.render_results perf` renders results/perf.md
from them.

glibc huge pages: JAX's CPU runtime takes thousands of page faults per step with glibc's default
malloc; `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` cuts them (measured in results/perf.md). It must
be set before the process starts, so this entry point re-executes itself with it set when it is
absent (see `rnnbench.hugepages.ensure`; opt out with RNNBENCH_NO_HUGETLB=1). torch runs in the
same process and gets the same allocator setting.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import statistics
import sys
import time

from rnnbench import atomic, hugepages, provenance

SHAPES = {
    "S1": dict(batch=64, time=101, features=40, hidden=256, layers=1),
    "S2": dict(batch=64, time=101, features=40, hidden=256, layers=2),
    "S3": dict(batch=32, time=1000, features=40, hidden=128, layers=1),
    # the accelerator shape of issue 12 (too big for a 2-core CPU run)
    "G1": dict(batch=256, time=1000, features=80, hidden=512, layers=2),
}
# Set by --torch_device / --precision (main); read by the makers.
OPTIONS = {"torch_device": "cpu", "precision": "float32"}
NUM_CLASSES = 12
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
FRAMEWORKS = ("rnnbench", "torch", "flax")


def step_flops(shape: dict, cell: str) -> float:
    """Matmul FLOPs of one train step: 3 x forward (forward, dgrad, wgrad)."""
    B, T, F, H, L = (shape[k] for k in ("batch", "time", "features", "hidden", "layers"))
    G = GATES[cell]
    fwd = 0.0
    n_in = F
    for _ in range(L):
        fwd += 2.0 * B * T * G * H * (n_in + H)
        n_in = H
    fwd += 2.0 * B * H * NUM_CLASSES
    return 3.0 * fwd


def make_data(shape: dict, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(shape["batch"], shape["time"], shape["features"])).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, size=(shape["batch"],)).astype(np.int32)
    return x, y


# ----------------------------------------------------------------------------- rnnbench


def make_rnnbench(
    shape: dict,
    cell: str,
    x,
    y,
    *,
    lr: float = 1e-3,
    use_lengths: bool = False,
    unroll: int | str = "auto",
    recurrence: str = "scan",
):
    """Returns step() -> None that runs one train step and blocks until it is done.
    `recurrence`: fused.IMPLEMENTATION while the step is traced ("pallas": rnnbench/pallas_rnn.py
    for the LSTM and GRU)."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from rnnbench import fused, layers

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.encoder = layers.build(
                cell,
                shape["features"],
                shape["hidden"],
                num_layers=shape["layers"],
                unroll=unroll,
                precision=OPTIONS["precision"],
                rngs=rngs,
            )
            self.head = nnx.Linear(shape["hidden"], NUM_CLASSES, rngs=rngs)

        def __call__(self, x, lengths=None):
            _, carries = self.encoder(x, lengths)
            last = self.encoder.layers[-1]
            return self.head(last.cell.hidden(carries[-1]))

    model = Model(nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adam(lr)
    opt_state = tx.init(params)

    def loss_fn(params, x, y, lengths):
        logits = nnx.merge(graphdef, params)(x, lengths)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def train_step(params, opt_state, x, y, lengths):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y, lengths)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    train_step = jax.jit(train_step, donate_argnums=(0, 1))
    xd, yd = jnp.asarray(x), jnp.asarray(y)
    ld = jnp.full((x.shape[0],), x.shape[1], jnp.int32) if use_lengths else None
    state = {"p": params, "o": opt_state}

    def step():
        chosen, fused.IMPLEMENTATION = fused.IMPLEMENTATION, recurrence  # read when traced
        try:
            state["p"], state["o"], loss = train_step(state["p"], state["o"], xd, yd, ld)
        finally:
            fused.IMPLEMENTATION = chosen
        loss.block_until_ready()
        return loss

    return step


# ----------------------------------------------------------------------------- torch


def make_torch(shape: dict, cell: str, x, y, *, lr: float = 1e-3):
    import torch

    torch.manual_seed(0)
    device = torch.device(OPTIONS["torch_device"])
    cuda = device.type == "cuda"
    if cuda:  # exact float32 like rnnbench's default policy: no TF32 in cuDNN or cuBLAS
        exact = OPTIONS["precision"] == "float32"
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = not exact
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    kw = {"nonlinearity": "tanh"} if cell == "rnn" else {}
    rnn = cls(
        shape["features"], shape["hidden"], num_layers=shape["layers"], batch_first=True, **kw
    ).to(device)
    head = torch.nn.Linear(shape["hidden"], NUM_CLASSES).to(device)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).long().to(device)

    def step():
        opt.zero_grad(set_to_none=True)
        _, state = rnn(xt)
        h = state[0] if cell == "lstm" else state  # [layers, batch, H]
        loss = torch.nn.functional.cross_entropy(head(h[-1]), yt)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        return loss

    return step


# ----------------------------------------------------------------------------- flax.linen


def make_flax(shape: dict, cell: str, x, y, *, lr: float = 1e-3):
    import jax
    import jax.numpy as jnp
    import optax
    from flax import linen as nn

    H = shape["hidden"]
    cell_cls = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell, "rnn": nn.SimpleCell}[cell]

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            carry = None
            for _ in range(shape["layers"]):
                carry, x = nn.RNN(cell_cls(H), return_carry=True)(x)
            h = carry[1] if cell == "lstm" else carry  # LSTM carry is (c, h)
            return nn.Dense(NUM_CLASSES)(h)

    model = Model()
    xd, yd = jnp.asarray(x), jnp.asarray(y)
    params = model.init(jax.random.key(0), xd)
    tx = optax.adam(lr)
    opt_state = tx.init(params)

    def loss_fn(params, x, y):
        logits = model.apply(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    train_step = jax.jit(train_step, donate_argnums=(0, 1))
    state = {"p": params, "o": opt_state}

    def step():
        state["p"], state["o"], loss = train_step(state["p"], state["o"], xd, yd)
        loss.block_until_ready()
        return loss

    return step


MAKERS = {
    "rnnbench": make_rnnbench,
    "torch": make_torch,
    "flax": make_flax,
    # opt-in, not in the default --frameworks: the LSTM/GRU time loop as one Pallas kernel
    "rnnbench_pallas": functools.partial(make_rnnbench, recurrence="pallas"),
    # the scan without unrolling (what unroll="auto" picks on CPU), to measure that choice
    "rnnbench_unroll1": functools.partial(make_rnnbench, unroll=1),
    "rnnbench_unroll16": functools.partial(make_rnnbench, unroll=16),
}


# ----------------------------------------------------------------------------- peak


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best-of-`repeats` GFLOP/s of a jitted [n, n] @ [n, n] f32 matmul."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def lstm_breakdown(shape: dict, repeats: int, log=print) -> dict:
    """Where rnnbench's LSTM train step spends its time: median ms of the full step and of its
    parts (timed interleaved, one jit each), with the sequential-matmul and weight-gradient floors.

    Parts, for one layer at `shape` (time-major xp [T, B, 4H]):
      full step           the rnnbench train step (`make_rnnbench`, forward + backward + Adam)
      projection+recurrence fwd+bwd   grad of x @ W_ih followed by the fused recurrence
      recurrence fwd+bwd  grad of `fused.lstm_recurrence` alone (xp given)
      recurrence fwd      the forward alone (nothing stored)
      fwd storing         the custom VJP's forward (stores the gate activations)
      bwd                 the custom VJP's backward (backward scan + dW_hh)
      projection fwd      x @ W_ih + b alone ([T, B, F] -> [T, B, 4H])
      projection grad     its gradient for W_ih and b given dxp (x^T dxp and the bias sum);
                          also with the projection written as one 3-D dot_general, which XLA
                          CPU differentiates into a (time, batch)-contracting, slower matmul
      dW_hh matmul        the one [H, T*B] x [T*B, 4H] matmul inside bwd
      T x h @ W_hh        a scan of T [B, H] x [H, 4H] matmuls: the sequential floor of a pass
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from rnnbench import fused
    from rnnbench import precision as precision_lib

    B, T, F, H = shape["batch"], shape["time"], shape["features"], shape["hidden"]
    prec = precision_lib.lax_precision(precision_lib.DEFAULT)  # as the default LSTM layer
    x, y = make_data(shape)
    k = jax.random.split(jax.random.key(0), 5)
    w_hh = jax.random.normal(k[0], (H, 4 * H)) * 0.05
    w_ih = jax.random.normal(k[1], (F, 4 * H)) * 0.1
    xp = jax.random.normal(k[2], (T, B, 4 * H))
    h0 = c0 = jnp.zeros((B, H))
    b = jnp.zeros((4 * H,))
    xt = jnp.asarray(np.swapaxes(x, 0, 1))

    def rec_loss(w_hh, xp):
        return jnp.sum(fused.lstm_recurrence(w_hh, xp, h0, c0)[1][0])

    def project(w_ih, b, x):  # as cells.Cell._dot: leading dims flattened, one 2-D matmul
        return (x.reshape(-1, F) @ w_ih).reshape(T, B, -1) + b

    def project_3d(w_ih, b, x):  # the 3-D dot_general `x @ w_ih` gives (for comparison)
        return jnp.einsum("tbf,fg->tbg", x, w_ih) + b

    def layer_loss(w_hh, w_ih, x):
        return rec_loss(w_hh, project(w_ih, 0.0, x))

    def matmul_scan(w, h):
        return jax.lax.scan(lambda h, _: (jnp.tanh(jnp.dot(h, w)[:, :H]), None), h, None, length=T)[
            0
        ]

    fwd_store = jax.jit(lambda w, xp: fused._lstm_fwd(w, xp, h0, c0, None, 1, prec))
    saved = fwd_store(w_hh, xp)[1]
    cts = (jnp.zeros((T, B, H)), (jnp.ones((B, H)), jnp.zeros((B, H))))
    bwd = jax.jit(lambda saved, cts: fused._lstm_bwd(1, prec, saved, cts))
    hs, dg = jax.random.normal(k[3], (T, B, H)), jax.random.normal(k[4], (T, B, 4 * H))
    jitted = {
        "projection+recurrence fwd+bwd": (jax.jit(jax.grad(layer_loss, (0, 1))), (w_hh, w_ih, xt)),
        "recurrence fwd+bwd": (jax.jit(jax.grad(rec_loss, (0, 1))), (w_hh, xp)),
        "recurrence fwd": (jax.jit(rec_loss), (w_hh, xp)),
        "fwd storing": (fwd_store, (w_hh, xp)),
        "bwd": (bwd, (saved, cts)),
        "projection fwd": (jax.jit(project), (w_ih, b, xt)),
        "projection grad (dW_ih, db)": (
            jax.jit(jax.grad(lambda w, b, x, dg: jnp.vdot(project(w, b, x), dg), (0, 1))),
            (w_ih, b, xt, dg),
        ),
        "projection grad, 3-D dot": (
            jax.jit(jax.grad(lambda w, b, x, dg: jnp.vdot(project_3d(w, b, x), dg), (0, 1))),
            (w_ih, b, xt, dg),
        ),
        "dW_hh matmul": (jax.jit(lambda h, g: fused._wgrad(h, g, prec)), (hs, dg)),
        "T x h @ W_hh": (jax.jit(matmul_scan), (w_hh, h0)),
    }
    fns = {"full step": make_rnnbench(shape, "lstm", x, y)}
    for name, (f, a) in jitted.items():
        fns[name] = lambda f=f, a=a: jax.block_until_ready(f(*a))
    for f in fns.values():  # compile, then one warm call
        f()
        f()
    times = {n: [] for n in fns}
    for _ in range(repeats):
        for n, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[n].append(1e3 * (time.perf_counter() - t0))
    out = {n: {"median_ms": statistics.median(v), "min_ms": min(v)} for n, v in times.items()}
    for n, v in out.items():
        log(f"{n:32s} median {v['median_ms']:7.1f} ms   min {v['min_ms']:7.1f} ms")
    return out


# ----------------------------------------------------------------------------- main


def run(
    shapes,
    cells,
    frameworks,
    repeats: int,
    warmup: int,
    steps_per_repeat: int,
    use_lengths: bool,
    log=print,
    on_row=None,
) -> dict:
    """Times every (shape, cell) with every framework; returns the report. A framework whose
    setup or warm-up raises is left out of that row and its error kept in `row["errors"]` (a
    kernel that does not compile on this backend must not cost the other measurements).
    `on_row(report)` is called with the report so far after each row."""
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:  # only the torch framework needs it
        pass
    record = provenance.record(settings())
    log(f"# {provenance.one_line(record)}")
    peak = matmul_peak_gflops()
    log(f"# matmul peak (jitted 2048^3 f32, best of 10): {peak:.1f} GFLOP/s")
    results = []
    report = {"provenance": record, "peak_gflops": peak, "repeats": repeats}
    report.update(steps_per_repeat=steps_per_repeat, results=results)
    for sname in shapes:
        shape = SHAPES[sname]
        x, y = make_data(shape)
        for cell in cells:
            steps, compile_s, errors = {}, {}, {}
            for fw in frameworks:
                kw = {"use_lengths": use_lengths} if fw.startswith("rnnbench") else {}
                t0 = time.perf_counter()
                try:
                    steps[fw] = MAKERS[fw](shape, cell, x, y, **kw)
                    for _ in range(warmup):
                        steps[fw]()
                except Exception as e:  # noqa: BLE001 - recorded, and the row goes on
                    steps.pop(fw, None)
                    errors[fw] = f"{type(e).__name__}: {e}"[:500]
                    log(f"{sname} {cell} {fw}: FAILED {errors[fw][:200]}")
                    continue
                compile_s[fw] = time.perf_counter() - t0
            timed = [fw for fw in frameworks if fw in steps]
            times = {fw: [] for fw in timed}
            cpu = {fw: [] for fw in timed}
            faults = {fw: 0 for fw in timed}
            for _ in range(repeats):
                for fw in timed:  # interleaved
                    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                    t0, c0 = time.perf_counter(), time.process_time()
                    for _ in range(steps_per_repeat):
                        steps[fw]()
                    times[fw].append((time.perf_counter() - t0) / steps_per_repeat * 1e3)
                    cpu[fw].append((time.process_time() - c0) / steps_per_repeat * 1e3)
                    faults[fw] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
            flops = step_flops(shape, cell)
            row = {"shape": sname, "cell": cell, "gflop_per_step": flops / 1e9, "frameworks": {}}
            if errors:
                row["errors"] = errors
            for fw in timed:
                med = statistics.median(times[fw])
                gfs = flops / (med / 1e3) / 1e9
                row["frameworks"][fw] = {
                    "median_ms": med,
                    "min_ms": min(times[fw]),
                    "times_ms": times[fw],
                    "cpu_ms": statistics.median(cpu[fw]),
                    "gflops": gfs,
                    "pct_peak": 100 * gfs / peak,
                    "setup_s": compile_s[fw],
                    "faults_per_step": faults[fw] / (repeats * steps_per_repeat),
                }
            if "rnnbench" in timed and "torch" in timed:
                row["ratio_rnnbench_torch"] = (
                    row["frameworks"]["rnnbench"]["median_ms"]
                    / row["frameworks"]["torch"]["median_ms"]
                )
            if "rnnbench" in timed and "flax" in timed:
                row["ratio_rnnbench_flax"] = (
                    row["frameworks"]["rnnbench"]["median_ms"]
                    / row["frameworks"]["flax"]["median_ms"]
                )
            if "rnnbench" in timed and "rnnbench_pallas" in timed:
                row["ratio_pallas_scan"] = (
                    row["frameworks"]["rnnbench_pallas"]["median_ms"]
                    / row["frameworks"]["rnnbench"]["median_ms"]
                )
            results.append(row)
            parts = [
                f"{fw} {row['frameworks'][fw]['median_ms']:7.1f} ms "
                f"({row['frameworks'][fw]['gflops']:5.1f} GF/s, "
                f"{row['frameworks'][fw]['pct_peak']:4.1f}%)"
                for fw in timed
            ]
            ratio = (
                f"  rnnbench/torch {row['ratio_rnnbench_torch']:.2f}"
                if "ratio_rnnbench_torch" in row
                else ""
            )
            log(
                f"{sname} {cell:4s} | "
                + " | ".join(parts)
                + ratio
                + f"  (load {os.getloadavg()[0]:.1f})"
            )
            row["loadavg_after"] = os.getloadavg()[0]
            if on_row is not None:
                on_row(report)
    report["loadavg_end"] = os.getloadavg()
    return report


def settings() -> dict:
    """The process settings a timing depends on, for the provenance record."""
    out = {
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        **OPTIONS,
    }
    try:
        import torch
    except ImportError:  # the `compare` extra is optional; --breakdown does not need it
        return out
    return {**out, "torch_threads": torch.get_num_threads()}


def markdown_table(report: dict) -> str:
    fws = [fw for fw in MAKERS if any(fw in r["frameworks"] for r in report["results"])]
    head = (
        "| shape | cell | "
        + " | ".join(f"{fw} ms" for fw in fws)
        + " | rnnbench/torch | rnnbench/flax | "
        + " | ".join(f"{fw} GF/s (% peak)" for fw in fws)
        + " | "
        + " | ".join(f"{fw} min / CPU ms" for fw in fws)
        + " |"
    )
    lines = [head, "|" + "---|" * (4 + 3 * len(fws))]
    for r in report["results"]:
        f = r["frameworks"]
        ratio = f"{r['ratio_rnnbench_torch']:.2f}" if "ratio_rnnbench_torch" in r else "-"
        ratio_f = f"{r['ratio_rnnbench_flax']:.2f}" if "ratio_rnnbench_flax" in r else "-"

        def each(fmt):  # "error" for a framework that failed in this row
            return " | ".join(fmt(f[fw]) if fw in f else "error" for fw in fws)

        lines.append(
            f"| {r['shape']} | {r['cell']} | "
            + each(lambda v: f"{v['median_ms']:.1f}")
            + f" | {ratio} | {ratio_f} | "
            + each(lambda v: f"{v['gflops']:.0f} ({v['pct_peak']:.0f}%)")
            + " | "
            + each(lambda v: f"{v['min_ms']:.0f} / {v['cpu_ms']:.0f}")
            + " |"
        )
    errors = [
        (r["shape"], r["cell"], fw, e)
        for r in report["results"]
        for fw, e in r.get("errors", {}).items()
    ]
    lines += [f"\n{s} {c} {fw} failed: {e}" for s, c, fw, e in errors]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--shapes", default="S1,S2,S3", help="comma list of " + ",".join(SHAPES))
    p.add_argument("--cells", default="lstm,gru,rnn", help="comma list of lstm,gru,rnn")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument("--repeats", type=int, default=10, help="interleaved timed repeats")
    p.add_argument("--steps_per_repeat", type=int, default=1)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps (compile) per framework")
    p.add_argument(
        "--lengths",
        action="store_true",
        help="pass full-length `lengths` to rnnbench (the masked path users get with "
        "padded batches)",
    )
    p.add_argument("--out", default="", help="write the results as JSON here")
    p.add_argument(
        "--torch_device", default="auto", help="cpu, cuda, or auto (cuda when torch sees a GPU)"
    )
    p.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "tf32", "bf16"],
        help="rnnbench's matmul policy (and TF32 on/off for torch on CUDA)",
    )
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="instead of the comparison: time the parts of rnnbench's LSTM step at "
        "each of --shapes (see lstm_breakdown)",
    )
    args = p.parse_args(argv)
    OPTIONS["precision"] = args.precision
    OPTIONS["torch_device"] = args.torch_device
    if args.torch_device == "auto":
        try:
            import torch

            OPTIONS["torch_device"] = "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            OPTIONS["torch_device"] = "cpu"
    shapes = [s for s in args.shapes.split(",") if s]
    cells = [c for c in args.cells.split(",") if c]
    fws = [f for f in args.frameworks.split(",") if f]
    for s in shapes:
        if s not in SHAPES:
            p.error(f"unknown shape {s!r}; expected {sorted(SHAPES)}")
    for c in cells:
        if c not in GATES:
            p.error(f"unknown cell {c!r}; expected {sorted(GATES)}")
    for f in fws:
        if f not in MAKERS:
            p.error(f"unknown framework {f!r}; expected {list(MAKERS)}")
    command = "python -m experiments.bench_step " + " ".join(sys.argv[1:])
    if args.breakdown:
        report = {
            "provenance": provenance.record(settings()),
            "command": command,
            "repeats": args.repeats,
            "shapes": {},
        }
        t0 = time.time()
        for s in shapes:
            print(f"# {s} {SHAPES[s]}: LSTM step parts, {args.repeats} interleaved repeats")
            report["shapes"][s] = {
                "shape": SHAPES[s],
                "parts": lstm_breakdown(SHAPES[s], args.repeats),
            }
        report["wall_s"] = time.time() - t0
        report["loadavg_end"] = os.getloadavg()
        if args.out:
            atomic.write_json(args.out, report, indent=1)
        return
    t0 = time.time()

    def partial(report):  # after each row, so that a killed run keeps the rows it finished
        if args.out:
            atomic.write_json(args.out, {**report, "command": command, "complete": False}, indent=1)

    report = run(
        shapes,
        cells,
        fws,
        args.repeats,
        args.warmup,
        args.steps_per_repeat,
        args.lengths,
        on_row=partial,
    )
    report["command"] = command
    report["complete"] = True
    report["wall_s"] = time.time() - t0
    print()
    print(markdown_table(report))
    print(f"\n# wall time {report['wall_s']:.0f} s")
    if args.out:
        atomic.write_json(args.out, report, indent=1)


if __name__ == "__main__":
    hugepages.ensure()
    from rnnbench import errors

    errors.call(main)
