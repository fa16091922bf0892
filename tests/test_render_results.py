"""experiments/render_results.py: results/kws_default.md and results/perf.md from saved JSON."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from experiments import bench_step, render_results
from rnnbench import provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fw(median, minimum=None, cpu=None):
    return {
        "median_ms": median,
        "min_ms": minimum or median,
        "cpu_ms": cpu or median,
        "gflops": 10.0,
        "pct_peak": 5.0,
        "times_ms": [median],
    }


def _bench_step_json():
    rows = []
    for shape, cell, rb, th, fx in (
        ("S1", "gru", 50.0, 100.0, 40.0),
        ("S3", "lstm", 120.0, 100.0, 150.0),
    ):
        rows.append(
            {
                "shape": shape,
                "cell": cell,
                "gflop_per_step": 1.0,
                "frameworks": {"rnnbench": _fw(rb), "torch": _fw(th), "flax": _fw(fx)},
                "ratio_rnnbench_torch": rb / th,
                "ratio_rnnbench_flax": rb / fx,
            }
        )
    return {
        "provenance": {
            "git_commit": "abc1234def",
            "cores": 2,
            "cpu": "Test CPU",
            "date": "2026-01-01 00:00 UTC",
            "load_avg_1m": 0.5,
            "python": "3.11",
            "versions": {"jax": "0.10.2"},
        },
        "peak_gflops": 200.0,
        "loadavg_end": [1.0, 1.0, 1.0],
        "repeats": 5,
        "steps_per_repeat": 1,
        "results": rows,
        "command": "python -m experiments.bench_step --shapes=S1,S3 --out=x.json",
        "wall_s": 12.0,
    }


def test_perf_md_comes_from_the_benchmark_jsons(tmp_path):
    rep = _bench_step_json()
    (tmp_path / "bench_step.json").write_text(json.dumps(rep))
    (tmp_path / "bench_seeds.json").write_text(
        json.dumps(
            {
                "command": "python -m experiments.bench_seeds --models=3",
                "provenance": rep["provenance"],
                "models": 3,
                "part": "step",
                "frontend": 64,
                "repeats": 7,
                "results": [
                    {
                        "hidden": 64,
                        "sequential_ms": 90.0,
                        "sequential_faults": 1000,
                        "vmapped_ms": 100.0,
                        "vmapped_faults": 400,
                        "throughput_ratio": 0.9,
                    }
                ],
            }
        )
    )
    md = render_results.render_perf(str(tmp_path))
    # computed from the JSON, never typed: S1 GRU at 0.50 of torch, S3 LSTM at 1.20
    assert "**rnnbench/torch <= 0.8 on 1 of 2 (shape, cell) pairs**: S1 gru 0.50." in md
    assert "rnnbench/torch by cell: gru 0.50; lstm 1.20." in md
    assert "rnnbench/flax: 0.80-1.25, faster than flax.linen on 1 of 2." in md
    assert bench_step.markdown_table(rep) in md
    assert "| S1 | gru | 50.0 | 100.0 | 40.0 | 0.50 | 1.25 |" in md
    assert f"provenance: {provenance.one_line(rep['provenance'])}" in md
    assert "Measured by `python -m experiments.bench_step --shapes=S1,S3 --out=x.json`" in md
    assert "| 64 | 90.0 (1000) | 100.0 (400) | 0.90x |" in md
    # the breakdown has no JSON here: the file says which command would make it
    assert (
        f"Not measured into `{tmp_path / 'bench_breakdown.json'}` yet: `python -m "
        "experiments.bench_step --breakdown" in md
    )
    os.unlink(tmp_path / "bench_step.json")
    os.unlink(tmp_path / "bench_seeds.json")
    with pytest.raises(ValueError, match="no benchmark JSON"):
        render_results.render_perf(str(tmp_path))


def test_committed_bench_step_json_renders_its_table():
    """The committed results/bench_step.json (written before rnnbench/provenance.py) renders:
    its table is bench_step's, and the bottom line counts what the JSON holds."""
    with open(os.path.join(ROOT, "results", "bench_step.json")) as f:
        rep = json.load(f)
    md = render_results.render_perf(os.path.join(ROOT, "results"))
    assert bench_step.markdown_table(rep) in md
    fast = [r for r in rep["results"] if r["ratio_rnnbench_torch"] <= 0.8]
    assert f"on {len(fast)} of {len(rep['results'])} (shape, cell) pairs**" in md
    for r in fast:
        assert f"{r['shape']} {r['cell']} {r['ratio_rnnbench_torch']:.2f}" in md


FAKE_JOB = textwrap.dedent("""
    import json, os, sys, time
    workdir = sys.argv[1]
    t = time.process_time()
    while time.process_time() - t < 0.2:  # some CPU time for the parent to measure
        pass
    time.sleep(0.3)
    os.makedirs(workdir, exist_ok=True)
    config = {"dataset": "synth_commands", "data": {"options": {"test_size": 1200}},
              "features": {"n_mels": 40, "kind": "logmel"}, "spec_augment": {"enabled": True},
              "model": {"cell": "lstm", "hidden": 128, "layers": 1, "pooling": "last",
                        "frontend": {"channels": 64, "stride": 2}},
              "optimizer": {"name": "adam", "learning_rate": 0.003, "schedule": "cosine"},
              "batch_size": 64, "num_steps": 2000}
    final = {"test_accuracy": 0.955, "val_accuracy": 0.98, "num_params": 113228, "steps": 2000,
             "train_time_s": 80.0, "steps_per_s": 25.0,
             "cache": os.environ["RNNBENCH_CACHE"]}
    for name, obj in (("config.json", config), ("final.json", final)):
        with open(os.path.join(workdir, name), "w") as f:
            json.dump(obj, f)
""")


def test_main_job_is_timed_as_one_process_and_rendered(tmp_path):
    workdir = str(tmp_path / "job")
    out = str(tmp_path / "results" / "kws_default.json")
    saved = render_results.run_main_job(workdir, out, [sys.executable, "-c", FAKE_JOB, workdir])
    with open(out) as f:
        assert json.load(f) == saved
    assert saved["final"]["cache"] == os.path.join(workdir, "corpus_cache")  # a fresh cache
    assert saved["process"]["wall_s"] >= 0.5  # the fake job's 0.2 s of CPU, then 0.3 s asleep
    assert saved["process"]["user_s"] + saved["process"]["sys_s"] >= 0.15
    assert saved["provenance"]["git_commit"] == provenance.git_commit()
    assert saved["provenance"]["corpus_cache"] == "fresh (empty at the start)"
    with pytest.raises(ValueError, match="already holds a finished run"):
        render_results.run_main_job(workdir, out, [sys.executable, "-c", FAKE_JOB, workdir])

    # rendering: every number from the JSON; the target is judged on the whole process
    saved["process"] = {"wall_s": 65.4, "user_s": 90.0, "sys_s": 8.0}
    saved["provenance"]["load_avg_1m"], saved["provenance"]["cores"] = 6.0, 2
    md = render_results.render_kws_default(saved)
    assert "| test accuracy (unseen voices) | **95.50%** (1,146 / 1,200) |" in md
    assert "| validation accuracy | 98.00% |" in md
    assert "| **1:05 wall** (65 s) |" in md
    assert "| of which training steps | 80.0 s (25.0 steps/s) |" in md
    assert "| CPU time (user + sys) | 98 s (150% of a core) |" in md
    assert "on unseen voices in under 5 minutes, corpus build and compilation included): met." in md
    assert "(load average 6.0 at the start on 2 cores" in md
    assert f"--train_workdir={workdir}" in md and "RNNBENCH_CACHE=" in md
    assert "1-layer LSTM 128, last state; adam 0.003 cosine, batch 64, 2,000 steps." in md
    saved["process"]["wall_s"] = 301.0
    assert (
        "): not met in this measurement, on a shared machine.**"
        in render_results.render_kws_default(saved)
    )
    saved["provenance"]["load_avg_1m"] = 0.3  # an idle machine: the verdict stands alone
    md = render_results.render_kws_default(saved)
    assert "): not met.**" in md and "shared" not in md


def test_kws_default_renders_the_fsdd_table_from_its_json(tmp_path):
    with open(os.path.join(ROOT, "results", "kws_fsdd.json")) as f:
        fsdd = json.load(f)
    lines = render_results._fsdd_section(fsdd)
    means = {row["label"]: row["metrics"]["test_accuracy"]["mean"] for row in fsdd["rows"]}
    for label, mean in means.items():
        assert f"{label} {100 * mean:.2f} ± " in lines[-1]
    assert "[kws_fsdd.md](kws_fsdd.md)" in lines[-1]


def test_cli_names_a_missing_source(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.render_results",
            "kws_default",
            f"--results_dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 2
    assert f"{tmp_path / 'kws_default.json'}: cannot read the main job's saved results" in r.stderr


def test_provenance_commit_can_be_given_for_a_copied_checkout(monkeypatch):
    """A copy of the checkout run elsewhere records the commit it was told, and no dirty flag
    (its own .git, if any, is not that commit's)."""
    monkeypatch.setenv("RNNBENCH_GIT_COMMIT", "f18dd9868a17ae0f281e677afccc3aa6941b271b")
    rec = provenance.record()
    assert rec["git_commit"] == "f18dd9868a17ae0f281e677afccc3aa6941b271b"
    assert rec["git_dirty"] is None
    assert "commit f18dd98" in provenance.one_line(rec)
    monkeypatch.delenv("RNNBENCH_GIT_COMMIT")
    assert provenance.git_commit() == provenance._git("rev-parse", "HEAD")


def test_provenance_names_the_cpus_family_and_vector_extension(tmp_path):
    """Two CPUs sold as "AMD EPYC" compile different float32 sums: the record tells them apart."""
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
        "flags\t\t: fpu sse4_2 avx avx2 avx512f\n\nprocessor\t: 1\ncpu family\t: 99\n"
    )
    assert provenance.cpu_isa(str(info)) == "family 25 model 17, avx512f"
    info.write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert provenance.cpu_isa(str(info)) == "asimd"
    assert provenance.cpu_isa(str(tmp_path / "missing")) is None
    rec = {"cpu": "AMD EPYC", "cores": 2, "accelerator": "cpu", "date": "d"}
    assert "AMD EPYC x2 cores" in provenance.one_line(rec)  # records made before the field
    rec["cpu_isa"] = "family 25 model 17, avx512f"
    assert "AMD EPYC (family 25 model 17, avx512f) x2 cores;" in provenance.one_line(rec)
