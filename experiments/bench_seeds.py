"""Many seeds in one program vs one after another: throughput of the vmapped train step.

  python -m experiments.bench_seeds [--models=4] [--hidden=64,256] [--repeats=7]

Times the real train step of `experiments/configs/kws.py:lstm` (features, model, loss, Adam) on
random 1-second audio batches: N models stacked on a leading axis and `jax.vmap`-ed in ONE jitted
program, against the single-model program run N times. Repeats are interleaved; prints medians and
the ratio vmapped / sequential throughput (> 1: one program is faster), and the minor page faults
of each (getrusage). The sweep runner's setting is one pinned single-threaded process:

  XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
      taskset -c 0 python -m experiments.bench_seeds --models=3
  GLIBC_TUNABLES=glibc.malloc.hugetlb=0 ...   # without huge pages
  ... --frontend=0                            # no conv front-end: the LSTM runs 101 steps
  ... --part=recurrence                       # only the fused LSTM recurrence, fwd + bwd
  ... --out=results/bench_seeds.json          # the results with their provenance record

`python -m experiments.render_results perf` renders results/perf.md from the JSON.
"""

import argparse
import os
import resource
import statistics
import sys
import time

from rnnbench import atomic, hugepages, provenance


def side_by_side(single, single_args, many, many_args, n: int, repeats: int):
    """Medians of (N calls of `single`, one call of `many`), interleaved, with minor page faults.

    `single` returns (new first argument, outputs); it is threaded through its N calls, as a train
    state is. Returns (t_seq, faults_seq, t_vmap, faults_vmap)."""
    import jax

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    first, rest = single_args[0], single_args[1:]
    many_first, many_rest = many_args[0], many_args[1:]
    for _ in range(2):  # compile + warm up
        first, out = single(first, *rest)
        many_first, many_out = many(many_first, *many_rest)
    jax.block_until_ready((out, many_out))
    t_seq, t_vmap, f_seq, f_vmap = [], [], [], []
    for _ in range(repeats):
        f0, t0 = faults(), time.perf_counter()
        for _ in range(n):
            first, out = single(first, *rest)
        jax.block_until_ready(out)
        t_seq.append(time.perf_counter() - t0)
        f_seq.append(faults() - f0)
        f0, t0 = faults(), time.perf_counter()
        many_first, many_out = many(many_first, *many_rest)
        jax.block_until_ready(many_out)
        t_vmap.append(time.perf_counter() - t0)
        f_vmap.append(faults() - f0)
    med = statistics.median
    return med(t_seq), med(f_seq), med(t_vmap), med(f_vmap)


def trace_summary(trace_dir: str, top: int = 12) -> dict:
    """What the perfetto trace under `trace_dir` (jax.profiler, create_perfetto_trace=True) says
    each device did: per process whose name has '/device:' (the host's '/host:CPU' when there is
    none, e.g. on CPU), its busy time (the union of its events' intervals, µs), the events'
    count and the `top` event names by total duration [name, count, total µs]; and the span of
    the whole trace (µs)."""
    import glob
    import gzip
    import json

    paths = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"{trace_dir}: no perfetto_trace.json.gz (jax.profiler.trace)")
    with gzip.open(sorted(paths)[-1], "rt") as f:
        doc = json.load(f)
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    names = {
        e["pid"]: e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e.get("name") == "process_name"
    }
    spans = [e for e in events if e.get("ph") == "X" and "dur" in e]
    devices = [pid for pid, name in names.items() if "/device:" in name]
    chosen = devices or [pid for pid, name in names.items() if name.startswith("/host")]
    out = {"span_us": 0.0, "processes": {}}
    if spans:
        out["span_us"] = max(e["ts"] + e["dur"] for e in spans) - min(e["ts"] for e in spans)
    for pid in chosen:
        mine = sorted((e["ts"], e["ts"] + e["dur"], e["name"]) for e in spans if e["pid"] == pid)
        busy, end = 0.0, float("-inf")
        totals: dict[str, list] = {}
        for start, stop, name in mine:
            busy += max(0.0, stop - max(start, end))
            end = max(end, stop)
            t = totals.setdefault(name, [0, 0.0])
            t[0] += 1
            t[1] += stop - start
        ranked = sorted(totals.items(), key=lambda kv: -kv[1][1])[:top]
        out["processes"][names[pid]] = {
            "busy_us": busy,
            "events": len(mine),
            "top": [[name, c, round(us, 1)] for name, (c, us) in ranked],
        }
    return out


def profile(single, single_args, many, many_args, n: int, trace_dir: str, reps: int = 3):
    """{"single": trace_summary of reps x N calls of `single`, "vmapped": of reps calls of
    `many`}, each traced on its own after a warm-up (traces kept under `trace_dir`)."""
    import jax

    first, rest = single_args[0], single_args[1:]
    many_first, many_rest = many_args[0], many_args[1:]
    first, out = single(first, *rest)  # warm (compiled by an earlier call) before tracing
    many_first, many_out = many(many_first, *many_rest)
    jax.block_until_ready((out, many_out))
    with jax.profiler.trace(os.path.join(trace_dir, "single"), create_perfetto_trace=True):
        for _ in range(reps * n):
            first, out = single(first, *rest)
        jax.block_until_ready(out)
    with jax.profiler.trace(os.path.join(trace_dir, "vmapped"), create_perfetto_trace=True):
        for _ in range(reps):
            many_first, many_out = many(many_first, *many_rest)
        jax.block_until_ready(many_out)
    return {
        "reps": reps,
        "single": trace_summary(os.path.join(trace_dir, "single")),
        "vmapped": trace_summary(os.path.join(trace_dir, "vmapped")),
    }


def report(label: str, n: int, seq, f_seq, vm, f_vmap) -> dict:
    """Prints one line and returns it as a JSON-able dict (times in ms)."""
    print(
        f"{label}: {n} sequential {seq * 1e3:7.1f} ms ({f_seq:.0f} faults) | one vmapped of "
        f"{n} {vm * 1e3:7.1f} ms ({f_vmap:.0f} faults) | vmapped/sequential throughput "
        f"{seq / vm:.2f}x",
        flush=True,
    )
    return {
        "label": label,
        "models": n,
        "sequential_ms": seq * 1e3,
        "sequential_faults": f_seq,
        "vmapped_ms": vm * 1e3,
        "vmapped_faults": f_vmap,
        "throughput_ratio": seq / vm,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--hidden", default="64,256")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--frontend",
        type=int,
        default=64,
        help="conv front-end channels of the step (0: LSTM on all 101 frames)",
    )
    parser.add_argument(
        "--part",
        choices=["step", "recurrence"],
        default="step",
        help="the whole train step, or only the fused LSTM recurrence (forward + "
        "backward, T=51, batch 64) of rnnbench/fused.py",
    )
    parser.add_argument("--out", default="", help="write the results as JSON here")
    parser.add_argument(
        "--profile",
        default="",
        help="also trace the train step (3 x N single calls, 3 vmapped calls) with "
        "jax.profiler into this folder and add each device's busy time and top kernels to the "
        "results (`profile`)",
    )
    args = parser.parse_args()
    t0 = time.time()

    import jax
    import jax.numpy as jnp
    import numpy as np

    from experiments.configs import kws
    from rnnbench import data as data_lib
    from rnnbench import fused, objectives, train

    n = args.models
    rng = np.random.default_rng(0)
    out = {
        "command": "python -m experiments.bench_seeds " + " ".join(sys.argv[1:]),
        "provenance": provenance.record(
            {
                "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
                "xla_flags": os.environ.get("XLA_FLAGS", ""),
                "cpu_affinity": sorted(os.sched_getaffinity(0)),
            }
        ),
        "models": n,
        "part": args.part,
        "frontend": args.frontend,
        "repeats": args.repeats,
        "results": [],
    }
    print(
        f"# {jax.devices()[0].device_kind}, {jax.device_count()} device(s), N={n}, "
        f"part={args.part}, batch 64 per model, frontend={args.frontend}, "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}"
    )
    fake = data_lib.Dataset("fake", "classify", [str(i) for i in range(12)], {})
    batch = {
        "audio": rng.normal(0, 0.1, (64, 16000)).astype(np.float32),
        "audio_lengths": np.full((64,), 16000, np.int32),
        "labels": rng.integers(0, 12, 64).astype(np.int32),
        "weights": np.ones((64,), np.float32),
    }
    stacked = {k: np.stack([v] * n) for k, v in batch.items()}
    # on the device before timing, as the train loop's prefetch has them: no host copy per step
    batch, stacked = jax.device_put(batch), jax.device_put(stacked)
    for hidden in [int(h) for h in args.hidden.split(",")]:
        if args.part == "recurrence":
            T = 51
            xp = jnp.asarray(rng.normal(size=(n, T, 64, 4 * hidden)), jnp.float32)
            w = jnp.asarray(rng.normal(size=(n, hidden, 4 * hidden)) * 0.1, jnp.float32)
            h0 = jnp.zeros((n, 64, hidden))

            def grads(w, xp, h0):
                def loss(w, xp):
                    ys, _ = fused.lstm_recurrence(w, xp, h0, h0)
                    return jnp.sum(ys**2)

                dw, dxp = jax.grad(loss, argnums=(0, 1))(w, xp)
                return w - 1e-3 * dw, dxp

            res = side_by_side(
                jax.jit(grads),
                (w[0], xp[0], h0[0]),
                jax.jit(jax.vmap(grads)),
                (w, xp, h0),
                n,
                args.repeats,
            )
            out["results"].append(
                {"hidden": hidden, **report(f"H={hidden:4d} recurrence", n, *res)}
            )
            continue
        config = kws.get_config("lstm")
        config.model.hidden = hidden
        config.model.frontend.channels = args.frontend
        graphdef, state, tx, _ = train.init_state(config, fake)
        step, _ = train.make_steps(config, graphdef, tx, objectives.make(config, fake))
        states = jax.tree.map(lambda *xs: jnp.stack(xs), *[state] * n)
        single, many = jax.jit(step), jax.jit(jax.vmap(step))  # compiled once, timed, traced
        res = side_by_side(single, (state, batch), many, (states, stacked), n, args.repeats)
        out["results"].append({"hidden": hidden, **report(f"H={hidden:4d} train step", n, *res)})
        if args.profile:
            trace_dir = os.path.join(args.profile, f"h{hidden}")
            prof = profile(single, (state, batch), many, (states, stacked), n, trace_dir)
            out["results"][-1]["profile"] = prof
            for kind in ("single", "vmapped"):
                for name, p in prof[kind]["processes"].items():
                    print(
                        f"  profile {kind}: {name} busy {p['busy_us'] / 1e3:.2f} ms of "
                        f"{prof[kind]['span_us'] / 1e3:.2f} ms traced, {p['events']} events; "
                        f"top: {p['top'][:3]}",
                        flush=True,
                    )
    out["wall_s"] = time.time() - t0
    out["loadavg_end"] = os.getloadavg()
    if args.out:
        atomic.write_json(args.out, out, indent=1)


if __name__ == "__main__":
    hugepages.ensure()
    from rnnbench import errors

    errors.call(main)
