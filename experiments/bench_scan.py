r"""Cost of a train step vs sequence length: parallel (associative_scan) vs sequential (lax.scan).

One train step = forward + backward + Adam update of a one-layer recurrent encoder
(`rnnbench.layers.build(cell, 40, H)`) and a per-step linear head H -> 8, with an MSE loss against
a random target [B, T, 8]; the whole step is one jax.jit with params and optimizer state donated.
Full-length sequences (no `lengths`). Variants, side by side in one process:

  mingru / minlstm / lru   parallel=False ("seq": lax.scan over `step`) and parallel=True
                           ("par": jax.lax.associative_scan in `parallel_scan`)
  lstm / gru               rnnbench.cells, lax.scan (reference points: nonlinear recurrences)

For each T the variants are compiled (compile time = lower + compile of the step), warmed up once,
then timed with interleaved repeats (v1, v2, ..., v1, v2, ...) so that machine drift hits all
alike; we report the median step time. Memory is XLA's buffer assignment for the compiled step
(`compiled.memory_analysis()`): temp = activations kept for the backward pass plus scratch;
arguments (params, optimizer state, batch) are listed apart.

Default run (about 6-10 minutes on 2 cores):

  python -m experiments.bench_scan
  python -m experiments.bench_scan --T=100,1000 --cells=mingru,lstm --repeats=5   # quicker

Writes results/longrange/scan_cost.{json,md,png} (change with --out-dir).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

from rnnbench import atomic, hugepages, provenance

DEFAULT_T = (100, 300, 1000, 3000, 16000)
DEFAULT_CELLS = ("mingru", "minlstm", "lru", "lstm", "gru")
PARALLEL_CAPABLE = ("mingru", "minlstm", "lru")
FEATURES, OUT = 40, 8


def default_repeats(T: int) -> int:
    """Fewer repeats at large T, where a step takes seconds."""
    return 15 if T <= 300 else 9 if T <= 1000 else 5 if T <= 3000 else 3


def settings() -> dict:
    """The process settings a timing depends on, for the provenance record."""
    return {
        "platform": platform.platform(),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def make_step(cell: str, parallel: bool | None, T: int, batch: int, hidden: int, seed: int = 0):
    """Returns (step() -> loss, compile_seconds, memory dict) for one variant at one T."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from rnnbench import layers

    kw = {} if parallel is None else {"parallel": parallel}

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.encoder = layers.build(cell, FEATURES, hidden, rngs=rngs, **kw)
            self.head = nnx.Linear(hidden, OUT, rngs=rngs)

        def __call__(self, x):
            y, _ = self.encoder(x)
            return self.head(y)

    model = Model(nnx.Rngs(seed))
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(batch, T, FEATURES)).astype(np.float32))
    target = jnp.asarray(rng.normal(size=(batch, T, OUT)).astype(np.float32))

    def loss_fn(params, x, target):
        return jnp.mean((nnx.merge(graphdef, params)(x) - target) ** 2)

    def train_step(params, opt_state, x, target):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, target)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    t0 = time.perf_counter()
    jitted = jax.jit(train_step, donate_argnums=(0, 1))
    compiled = jitted.lower(params, opt_state, x, target).compile()
    compile_s = time.perf_counter() - t0
    mem = {}
    try:
        ma = compiled.memory_analysis()
        for k in (
            "temp_size_in_bytes",
            "argument_size_in_bytes",
            "output_size_in_bytes",
            "generated_code_size_in_bytes",
        ):
            v = getattr(ma, k, None)
            if v is not None:
                mem[k] = int(v)
    except Exception as e:  # memory_analysis is best effort on some backends
        mem["error"] = repr(e)
    state = {"p": params, "o": opt_state}

    def step():
        state["p"], state["o"], loss = compiled(state["p"], state["o"], x, target)
        return float(loss)  # blocks until the step is done

    return step, compile_s, mem


def _fused_enabled():
    try:
        from rnnbench import fused

        return bool(fused.ENABLED)
    except ImportError:
        return False


def variants(cells):
    out = []
    for c in cells:
        if c in PARALLEL_CAPABLE:
            out += [(c, False), (c, True)]
        else:
            out.append((c, None))
    return out


def label(cell, parallel):
    return cell if parallel is None else f"{cell}-{'par' if parallel else 'seq'}"


def run(Ts, cells, batch, hidden, repeats, out_dir, log=print):
    import gc

    report = {
        "command": " ".join(["python -m experiments.bench_scan"] + sys.argv[1:]),
        "provenance": provenance.record(settings()),
        "config": {
            "batch": batch,
            "hidden": hidden,
            "features": FEATURES,
            "head_out": OUT,
            "loss": "MSE, per-step linear head",
            "optimizer": "adam",
            "dtype": "float32",
            "lengths": "full (no mask)",
            "T": list(Ts),
            "cells": list(cells),
            "fused_enabled": _fused_enabled(),
        },
        "results": [],
    }
    for T in Ts:
        R = repeats or default_repeats(T)
        steps, rows = [], []
        for cell, par in variants(cells):
            step, compile_s, mem = make_step(cell, par, T, batch, hidden)
            loss0 = step()  # warm-up
            steps.append(step)
            rows.append(
                {
                    "cell": cell,
                    "parallel": par,
                    "variant": label(cell, par),
                    "T": T,
                    "compile_s": compile_s,
                    "memory": mem,
                    "first_loss": loss0,
                    "times_s": [],
                }
            )
            log(
                f"T={T:>6} {label(cell, par):>12}: compiled in {compile_s:6.2f} s, "
                f"temp {mem.get('temp_size_in_bytes', 0) / 2**20:8.1f} MiB"
            )
        for _ in range(R):
            for step, row in zip(steps, rows):
                t0 = time.perf_counter()
                step()
                row["times_s"].append(time.perf_counter() - t0)
        for row in rows:
            row["step_ms_median"] = 1e3 * statistics.median(row["times_s"])
            row["repeats"] = R
            log(
                f"T={T:>6} {row['variant']:>12}: {row['step_ms_median']:10.2f} ms/step "
                f"(median of {R})"
            )
        report["results"] += rows
        del steps
        gc.collect()
        write_outputs(report, out_dir, final=False)
    try:
        report["loadavg_end"] = list(os.getloadavg())
    except OSError:
        pass
    write_outputs(report, out_dir, final=True)
    return report


def _fmt_ms(ms):
    return f"{ms:,.1f}" if ms < 100 else f"{ms:,.0f}"


def _ms(by, variant, T) -> float:
    return by[(variant, T)]["step_ms_median"]


def _machine(report) -> tuple[str, float, int]:
    """(the header's machine line, load average at the start, cores): from the provenance
    record, or from the `machine` dict of JSONs written before rnnbench/provenance.py."""
    end = report.get("loadavg_end") or (report.get("machine") or {}).get("loadavg_end")
    at_end = ", ".join(f"{x:.1f}" for x in end) if end else ""
    if "provenance" in report:
        rec = report["provenance"]
        load = rec.get("load_avg_1m")
        end_text = f"; load average at end {at_end}" if at_end else ""
        return (
            f"Provenance: {provenance.one_line(rec)}{end_text}.",
            load or 0.0,
            rec.get("cores") or 1,
        )
    m = report["machine"]
    line = (
        f"Machine: {m['cpu']}, {m['cpu_count']} CPUs, {m['platform']}, python {m['python']}, "
        f"jax {m['jax']}, flax {m['flax']} ({m['backend']}); GLIBC_TUNABLES="
        f"`{m.get('glibc_tunables', '')}`; load average at start "
        f"{', '.join(f'{x:.1f}' for x in m.get('loadavg_start', []))}"
        f"{f', at end {at_end}' if at_end else ''}."
    )
    return line, m.get("loadavg_start", [0.0])[0], m.get("cpu_count") or 1


def markdown(report) -> str:
    res = report["results"]
    Ts = sorted({r["T"] for r in res})
    vs = list(dict.fromkeys(r["variant"] for r in res))
    by = {(r["variant"], r["T"]): r for r in res}
    c = report["config"]
    machine, load, cores = _machine(report)
    lines = [
        "# Train-step cost vs T: parallel (associative_scan) vs sequential (lax.scan)",
        "",
        f"Command: `{report['command']}`",
        "",
        machine,
        "",
        f"Step = fwd + bwd + Adam of one recurrent layer ({c['features']} -> {c['hidden']}) "
        f"and a per-step linear head ({c['hidden']} -> {c['head_out']}), MSE loss, "
        f"batch {c['batch']}, "
        f"{c['dtype']}, full-length sequences; one jax.jit, params and optimizer state donated. "
        "Repeats interleaved across variants; median reported (repeats per T in the JSON). "
        "`-seq` = lax.scan over the cell's step (the default, parallel=False), "
        "`-par` = jax.lax.associative_scan (parallel=True); lstm/gru are rnnbench's sequential "
        "cells for reference, on the layer's default path (with rnnbench/fused.py's "
        "hand-written backward pass when that module is enabled"
        + (f": {'on' if c['fused_enabled'] else 'off'} in this run" if "fused_enabled" in c else "")
        + ").",
        "",
    ]
    if load > cores:
        lines += [
            f"**Caution:** the machine was shared with other jobs (load average {load:.1f} on "
            f"{cores} CPUs at start), so the timings are noisy; ratios between variants "
            "are more reliable than absolute times because repeats are interleaved.",
            "",
        ]

    def table(title, columns, cell):
        """A Markdown table with one row per T; `cell(column, T)` gives the text ("" if absent)."""
        rows = [
            "",
            f"## {title}",
            "",
            "| T | " + " | ".join(columns) + " |",
            "|---:|" + "---:|" * len(columns),
        ]
        return rows + [f"| {T} | " + " | ".join(cell(c, T) for c in columns) + " |" for T in Ts]

    def have(*keys):
        return all(k in by for k in keys)

    lines += table(
        "Median ms per train step",
        vs,
        lambda v, T: _fmt_ms(by[(v, T)]["step_ms_median"]) if have((v, T)) else "",
    )[1:]
    pairs = [c for c in PARALLEL_CAPABLE if f"{c}-seq" in vs and f"{c}-par" in vs]
    if pairs:
        lines += table(
            "par / seq step-time ratio (> 1: the parallel form is slower)",
            pairs,
            lambda p, T: (
                f"{_ms(by, p + '-par', T) / _ms(by, p + '-seq', T):.2f}"
                if have((p + "-par", T), (p + "-seq", T))
                else ""
            ),
        )
    lines += table(
        "Compile time of the step (s)",
        vs,
        lambda v, T: f"{by[(v, T)]['compile_s']:.1f}" if have((v, T)) else "",
    )
    lines += table(
        "XLA temp memory of the step (MiB; `compiled.memory_analysis()`)",
        vs,
        lambda v, T: (
            f"{by[(v, T)]['memory'].get('temp_size_in_bytes', float('nan')) / 2**20:,.1f}"
            if have((v, T))
            else ""
        ),
    )
    lines.append("")
    return "\n".join(lines)


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = report["results"]
    vs = list(dict.fromkeys(r["variant"] for r in res))
    colors = {"mingru": "C0", "minlstm": "C1", "lru": "C2", "lstm": "C3", "gru": "C4"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for v in vs:
        rows = sorted((r for r in res if r["variant"] == v), key=lambda r: r["T"])
        Ts = [r["T"] for r in rows]
        style = dict(
            color=colors.get(rows[0]["cell"], None),
            marker="o",
            ms=3,
            ls="--" if rows[0]["parallel"] else "-",
            label=v,
        )
        axes[0].plot(Ts, [r["step_ms_median"] for r in rows], **style)
        axes[1].plot(
            Ts, [r["memory"].get("temp_size_in_bytes", float("nan")) / 2**20 for r in rows], **style
        )
    c = report["config"]
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="T (steps)",
        ylabel="ms per train step",
        title=f"fwd+bwd+Adam, B={c['batch']}, H={c['hidden']}, "
        f"{(report.get('provenance') or {}).get('accelerator', 'cpu')}",
    )
    axes[1].set(
        xscale="log",
        yscale="log",
        xlabel="T (steps)",
        ylabel="XLA temp memory (MiB)",
        title="step working memory",
    )
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.text(
        0.5,
        0.005,
        "solid: lax.scan (sequential); dashed: associative_scan (parallel=True)",
        ha="center",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    atomic.save_figure(fig, path)
    plt.close(fig)


def write_outputs(report, out_dir, final: bool):
    atomic.write_json(os.path.join(out_dir, "scan_cost.json"), report, indent=1)
    atomic.write_text(os.path.join(out_dir, "scan_cost.md"), markdown(report))
    if final:
        plot(report, os.path.join(out_dir, "scan_cost.png"))


def _ints(s):
    return tuple(int(v) for v in s.split(",") if v)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--T", type=_ints, default=DEFAULT_T, help="comma-separated sequence lengths")
    p.add_argument(
        "--cells",
        default=",".join(DEFAULT_CELLS),
        help=f"comma-separated, from {','.join(DEFAULT_CELLS)}",
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument(
        "--repeats",
        type=int,
        default=0,
        help="timed repeats per T (0: 15 at T<=300, 9 at T<=1000, 5 at T<=3000, 3 above)",
    )
    p.add_argument("--out-dir", default="results/longrange")
    p.add_argument(
        "--from-json",
        default="",
        help="only re-render the .md and .png of --out-dir from this scan_cost.json",
    )
    args = p.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            write_outputs(json.load(f), args.out_dir, final=True)
        return
    cells = tuple(c for c in args.cells.split(",") if c)
    bad = [c for c in cells if c not in DEFAULT_CELLS]
    if bad:
        p.error(f"unknown cells {bad}; choose from {DEFAULT_CELLS}")
    run(
        args.T,
        cells,
        args.batch,
        args.hidden,
        args.repeats,
        args.out_dir,
        log=lambda s: print(s, flush=True),
    )


if __name__ == "__main__":
    hugepages.ensure()  # same allocator setting as the other entry points (results/perf.md)
    from rnnbench import errors

    errors.call(main)
