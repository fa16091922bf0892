r"""Cost of location-aware attention: the conv form vs the one-matmul form, side by side.

Location-aware attention (Chorowski et al. 2015; rnnbench/seq2seq.py `LocationAwareAttention`)
adds U (F * α_prev) to every decoder step's energies: a width-31 convolution of the previous
weights with one input channel, then a projection. `location_term` computes it as ONE matmul,
α's windows [B, T, width] @ (F U) [width, dim], with the same parameters. This benchmark times
both forms in the models that use them, built from the configs the tables train:

  las   experiments/configs/asr.py:las_bilstm_phrases (listen-attend-spell, BiLSTM encoder)
  tts   experiments/configs/tts.py:gru (the small Tacotron 2 of results/tts_*.md)

Each case: forward + backward (`jax.value_and_grad` of the mean squared outputs w.r.t. every
parameter) of the whole model on one random batch of the config's batch size, teacher-forced, at
the shapes below; one jax.jit per form (the conv form is swapped in at trace time), warmed up,
then timed with interleaved repeats; median reported, and the largest difference between the
two forms' loss and gradients (they must agree to float32 rounding).

  python -m experiments.bench_attention                      # ~3 minutes on 2 cores
  python -m experiments.bench_attention --repeats=3 --cases=tts

Writes results/bench_attention.{json,md} (change with --out).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import numpy as np

from rnnbench import atomic, provenance

# case -> (config, what the shapes stand for, shapes)
CASES = {
    "las": (
        "experiments/configs/asr.py:las_bilstm_phrases",
        "a 4 s synth_phrases clip (400 frames of 10 ms) and a 45-character transcript",
        {"frames": 400, "chars": 45},
    ),
    "tts": (
        "experiments/configs/tts.py:gru",
        "a 48-character phrase and 3 s of mels (240 frames of 12.5 ms)",
        {"frames": 240, "chars": 48},
    ),
}


@contextlib.contextmanager
def conv_form():
    """Within the block, `LocationAwareAttention.location_term` is the nnx.Conv + Linear form."""
    from rnnbench import seq2seq

    cls = seq2seq.LocationAwareAttention
    matmul = cls.location_term
    cls.location_term = lambda self, prev: self.location_proj(self.conv(prev[..., None]))
    try:
        yield
    finally:
        cls.location_term = matmul


def load_config(spec: str):
    """'experiments/configs/x.py:variant' (relative to the repository) -> its ConfigDict."""
    from rnnbench import sweep

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return sweep.load_config_module(os.path.join(root, spec))[3]


def make_case(name: str, seed: int = 0):
    """(config spec, params -> (loss, gradients), params, description) for one case."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from rnnbench import models

    spec, what, shape = CASES[name]
    config = load_config(spec)
    cfg = config.model.to_dict()
    b, t, u = config.batch_size, shape["frames"], shape["chars"]
    rng = np.random.default_rng(seed)
    n_classes = 28
    labels = jnp.asarray(rng.integers(1, n_classes + 1, (b, u)), jnp.int32)
    label_lengths = jnp.full((b,), u, jnp.int32)
    frame_lengths = jnp.full((b,), t, jnp.int32)
    if name == "tts":
        m = config.features.n_mels
        model = models.build(cfg, num_features=m, num_classes=n_classes, rngs=nnx.Rngs(seed))
        mels = jnp.asarray(rng.normal(size=(b, t, m)).astype(np.float32))

        def apply(model):
            out, _ = model(labels, label_lengths, mels=mels, mel_lengths=frame_lengths)
            return jnp.mean(out["mel_post"] ** 2) + jnp.mean(out["stop_logits"] ** 2)

    else:
        f = config.features.n_mels
        model = models.build(cfg, num_features=f, num_classes=n_classes, rngs=nnx.Rngs(seed))
        feats = jnp.asarray(rng.normal(size=(b, t, f)).astype(np.float32))

        def apply(model):
            logits, aux = model(feats, frame_lengths, labels=labels, label_lengths=label_lengths)
            return jnp.mean(logits.clip(-30, 30) ** 2) + jnp.mean(aux["ctc_logits"] ** 2)

    graphdef, params = nnx.split(model, nnx.Param)

    def loss(params):
        return apply(nnx.merge(graphdef, params))

    desc = f"batch {b}, {what}"
    return spec, jax.value_and_grad(loss), params, desc


def max_difference(a, b) -> float:
    import jax

    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def run(cases, repeats: int, log=print) -> dict:
    import jax

    report = {
        "command": " ".join(["python -m experiments.bench_attention"] + sys.argv[1:]),
        "provenance": provenance.record({}),
        "results": [],
    }
    for name in cases:
        spec, step, params, desc = make_case(name)
        forms = {}
        for form in ("conv", "matmul"):
            ctx = conv_form() if form == "conv" else contextlib.nullcontext()
            with ctx:
                t0 = time.perf_counter()
                # a new function per form: jax caches traces by function, and would reuse
                # the first form's
                compiled = jax.jit(lambda p: step(p)).lower(params).compile()
                compile_s = time.perf_counter() - t0
            out = jax.block_until_ready(compiled(params))  # warm-up
            forms[form] = {"compiled": compiled, "compile_s": compile_s, "out": out, "times": []}
        for _ in range(repeats):
            for f in forms.values():
                t0 = time.perf_counter()
                jax.block_until_ready(f["compiled"](params))
                f["times"].append(time.perf_counter() - t0)
        ms = {k: 1e3 * statistics.median(f["times"]) for k, f in forms.items()}
        row = {
            "case": name,
            "config": spec,
            "shapes": desc,
            "repeats": repeats,
            "conv_ms": ms["conv"],
            "matmul_ms": ms["matmul"],
            "speedup": ms["conv"] / ms["matmul"],
            "compile_s": {k: f["compile_s"] for k, f in forms.items()},
            "max_abs_difference": max_difference(forms["conv"]["out"], forms["matmul"]["out"]),
        }
        report["results"].append(row)
        log(
            f"{name}: conv {row['conv_ms']:.1f} ms, matmul {row['matmul_ms']:.1f} ms "
            f"({row['speedup']:.2f}x), max |difference| {row['max_abs_difference']:.2e}"
        )
    return report


def markdown(report: dict) -> str:
    lines = [
        "# Location-aware attention: conv form vs one-matmul form (forward + backward)",
        "",
        "Generated by `experiments/bench_attention.py`; do not edit by hand. Reproduce with:",
        "",
        "```",
        report["command"],
        "```",
        "",
        f"Provenance: {provenance.one_line(report['provenance'])}",
        "",
        "Whole model, teacher forced, forward + backward (gradients of every parameter), one "
        "jax.jit per form; repeats interleaved, median. *conv*: `nnx.Conv` (one input channel, "
        "'SAME') then the projection, what rnnbench computed before; *matmul*: "
        "`LocationAwareAttention.location_term`, the same parameters as one matmul over α's "
        "windows. *max |difference|*: largest absolute difference between the two forms' loss "
        "and gradients.",
        "",
        "| case | config | shapes | conv ms | matmul ms | conv / matmul | max abs difference |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['case']} | `{r['config']}` | {r['shapes']} | {r['conv_ms']:.1f} | "
            f"{r['matmul_ms']:.1f} | {r['speedup']:.2f}x | {r['max_abs_difference']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def write(report: dict, out: str) -> None:
    import json

    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    atomic.write_text(out + ".json", json.dumps(report, indent=1) + "\n")
    atomic.write_text(out + ".md", markdown(report))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated of {list(CASES)}")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default="results/bench_attention")
    a = p.parse_args(argv)
    cases = [c for c in a.cases.split(",") if c]
    bad = [c for c in cases if c not in CASES]
    if bad or not cases:
        p.error(f"--cases {a.cases!r}: expected names from {list(CASES)}")
    if a.repeats < 1:
        p.error(f"--repeats must be >= 1, got {a.repeats}")
    write(run(cases, a.repeats), a.out)
    print(f"wrote {a.out}.md and {a.out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
