"""experiments/bench_attention.py: both forms of the location term agree, the table says so."""

import jax
import numpy as np
from flax import nnx

from experiments import bench_attention
from rnnbench import seq2seq


def test_conv_form_swaps_the_location_term_and_restores_it():
    att = seq2seq.LocationAwareAttention(6, 5, 7, filters=3, width=31, rngs=nnx.Rngs(1))
    prev = jax.random.uniform(jax.random.key(0), (2, 40))
    matmul = seq2seq.LocationAwareAttention.location_term
    with bench_attention.conv_form():
        conv = att.location_term(prev)
    np.testing.assert_array_equal(conv, att.location_proj(att.conv(prev[..., None])))
    np.testing.assert_allclose(att.location_term(prev), conv, rtol=1e-5, atol=1e-6)
    assert seq2seq.LocationAwareAttention.location_term is matmul


def test_run_times_both_forms_of_a_real_config(tmp_path, monkeypatch):
    spec, what, _ = bench_attention.CASES["tts"]
    monkeypatch.setitem(bench_attention.CASES, "tts", (spec, what, {"frames": 12, "chars": 6}))
    report = bench_attention.run(["tts"], repeats=1, log=lambda *_: None)
    (row,) = report["results"]
    assert row["config"] == "experiments/configs/tts.py:gru"
    assert row["conv_ms"] > 0 and row["matmul_ms"] > 0
    assert row["speedup"] == row["conv_ms"] / row["matmul_ms"]
    # the two forms were really both compiled: equal to rounding, not bit-identical by accident
    assert 0 < row["max_abs_difference"] < 1e-5
    bench_attention.write(report, str(tmp_path / "b"))
    md = (tmp_path / "b.md").read_text()
    assert "python -m experiments.bench_attention" in md
    assert "| tts | `experiments/configs/tts.py:gru` |" in md
