"""The benchmark entry points run end to end on tiny shapes and report what they claim.

They are checked for structure and internal consistency only: timings are never asserted
(speed is judged from their printed numbers, results/perf.md), but a benchmark that crashes or
reports a ratio inconsistent with its own medians would silently rot otherwise.
"""

import json
import os

import pytest

from experiments import bench_scan, bench_step
from rnnbench import provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = {"batch": 4, "time": 7, "features": 5, "hidden": 8, "layers": 1}


def test_bench_step_compares_the_three_frameworks(monkeypatch):
    pytest.importorskip("torch", reason="the comparison needs the `compare` extra (torch)")
    monkeypatch.setitem(bench_step.SHAPES, "TINY", TINY)
    monkeypatch.setattr(bench_step, "matmul_peak_gflops", lambda: 100.0)  # skip the 2048^3 probe
    report = bench_step.run(
        ["TINY"],
        ["lstm", "gru"],
        list(bench_step.FRAMEWORKS),
        repeats=2,
        warmup=1,
        steps_per_repeat=1,
        use_lengths=False,
        log=lambda *_: None,
    )
    assert [(r["shape"], r["cell"]) for r in report["results"]] == [
        ("TINY", "lstm"),
        ("TINY", "gru"),
    ]
    for row in report["results"]:
        fw = row["frameworks"]
        assert set(fw) == {"rnnbench", "torch", "flax"}
        for v in fw.values():
            assert len(v["times_ms"]) == 2 and v["min_ms"] <= v["median_ms"]
        assert row["ratio_rnnbench_torch"] == pytest.approx(
            fw["rnnbench"]["median_ms"] / fw["torch"]["median_ms"]
        )
    table = bench_step.markdown_table(report)
    assert table.count("| TINY |") == 2
    # where the numbers come from: this checkout, this machine, this process's settings
    rec = report["provenance"]
    assert rec["git_commit"] == provenance.git_commit() and rec["cores"] == os.cpu_count()
    assert rec["glibc_tunables"] == os.environ.get("GLIBC_TUNABLES", "")
    assert rec["versions"]["jax"] == provenance.version("jax")


def test_bench_step_keeps_going_when_a_framework_fails(monkeypatch):
    """A kernel that does not build on this backend is left out of its row, with its error;
    the other frameworks are timed and every finished row is handed to `on_row`."""
    monkeypatch.setitem(bench_step.SHAPES, "TINY", TINY)
    monkeypatch.setattr(bench_step, "matmul_peak_gflops", lambda: 100.0)

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel for this backend")

    monkeypatch.setitem(bench_step.MAKERS, "broken", broken)
    seen = []
    report = bench_step.run(
        ["TINY"],
        ["gru"],
        ["rnnbench", "broken", "rnnbench_unroll1"],
        repeats=2,
        warmup=1,
        steps_per_repeat=1,
        use_lengths=False,
        log=lambda *_: None,
        on_row=lambda r: seen.append(len(r["results"])),
    )
    (row,) = report["results"]
    assert set(row["frameworks"]) == {"rnnbench", "rnnbench_unroll1"}
    assert row["errors"] == {"broken": "RuntimeError: no kernel for this backend"}
    assert seen == [1]
    table = bench_step.markdown_table(report)
    assert "TINY gru broken failed: RuntimeError: no kernel for this backend" in table


def test_trace_summary_counts_each_devices_busy_time_once(tmp_path):
    """Overlapping kernels on two streams of one GPU count once in its busy time; host events
    are left out when a device is in the trace."""
    import gzip
    import json

    from experiments import bench_seeds

    events = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/host:CPU"}},
        {"ph": "X", "pid": 1, "tid": 1, "ts": 0.0, "dur": 10.0, "name": "gemm"},
        {"ph": "X", "pid": 1, "tid": 2, "ts": 5.0, "dur": 10.0, "name": "gemm"},  # overlaps
        {"ph": "X", "pid": 1, "tid": 1, "ts": 30.0, "dur": 2.0, "name": "tanh"},
        {"ph": "X", "pid": 2, "tid": 9, "ts": 0.0, "dur": 50.0, "name": "python"},
    ]
    trace = tmp_path / "plugins" / "profile" / "run"
    trace.mkdir(parents=True)
    with gzip.open(trace / "perfetto_trace.json.gz", "wt") as f:
        json.dump({"traceEvents": events}, f)
    out = bench_seeds.trace_summary(str(tmp_path))
    assert out["span_us"] == 50.0
    assert out["processes"] == {
        "/device:GPU:0": {
            "busy_us": 17.0,
            "events": 3,
            "top": [["gemm", 2, 20.0], ["tanh", 1, 2.0]],
        }
    }
    with pytest.raises(FileNotFoundError, match="no perfetto_trace"):
        bench_seeds.trace_summary(str(tmp_path / "plugins" / "profile" / "empty"))


def test_bench_step_breakdown_times_every_part():
    out = bench_step.lstm_breakdown(TINY, repeats=2, log=lambda *_: None)
    assert set(out) == {
        "full step",
        "projection+recurrence fwd+bwd",
        "recurrence fwd+bwd",
        "recurrence fwd",
        "fwd storing",
        "bwd",
        "projection fwd",
        "projection grad (dW_ih, db)",
        "projection grad, 3-D dot",
        "dW_hh matmul",
        "T x h @ W_hh",
    }
    assert all(0 < v["min_ms"] <= v["median_ms"] for v in out.values())


def test_bench_scan_writes_its_table_and_plot(tmp_path):
    report = bench_scan.run(
        [8, 16],
        ("lstm", "mingru"),
        batch=2,
        hidden=8,
        repeats=2,
        out_dir=str(tmp_path),
        log=lambda *_: None,
    )
    # lstm: sequential only; mingru: sequential and associative scan; at each of the 2 lengths
    assert sorted((r["T"], r["variant"]) for r in report["results"]) == sorted(
        (T, bench_scan.label(c, par))
        for T in (8, 16)
        for c, par in [("lstm", None), ("mingru", False), ("mingru", True)]
    )
    assert all(r["repeats"] == 2 and len(r["times_s"]) == 2 for r in report["results"])
    assert sorted(os.listdir(tmp_path)) == ["scan_cost.json", "scan_cost.md", "scan_cost.png"]
    with open(tmp_path / "scan_cost.json") as f:
        saved = json.load(f)
    assert saved["config"]["T"] == [8, 16]
    assert saved["provenance"]["git_commit"] == provenance.git_commit()
    md = (tmp_path / "scan_cost.md").read_text()
    assert f"Provenance: {provenance.one_line(saved['provenance'])}" in md


def test_committed_scan_cost_md_is_what_its_json_renders_to():
    """results/longrange/scan_cost.md is bench_scan's rendering of scan_cost.json, character for
    character, also for a JSON written before rnnbench/provenance.py (a `machine` dict)."""
    base = os.path.join(ROOT, "results", "longrange", "scan_cost")
    with open(base + ".json") as f:
        report = json.load(f)
    with open(base + ".md") as f:
        assert bench_scan.markdown(report) == f.read()
