"""experiments/longrange_summary.py: the long-range README rendered from its JSON files."""

import json
import os
import subprocess
import sys

import pytest

from experiments import longrange_summary as summary

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results", "longrange")


def _meta(task, command, **extra):
    return {
        "command": command,
        "task": task,
        "seeds": 2,
        "steps": 300,
        "setup": f"setup of {task}",
        "machine": "2 CPU cores, load average 1.0 at the end",
        **extra,
    }


def _write(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)


def _make_results(d):
    """Hand-made files with known numbers: two cells x two lengths per task."""
    for task in ("adding", "copy", "selective", "recall"):
        cmd = f"python -m experiments.longrange --task={task}"
        lengths = (0.5, 2.0) if task == "recall" else (10, 20)
        good, bad = (0.001, 0.5) if task == "adding" else (0.95, 0.2)
        length = [
            {"cell": "gru", "length": lengths[0], "mean": good, "solved": True},
            {"cell": "gru", "length": lengths[1], "mean": good * 2, "solved": task == "adding"},
            {"cell": "rnn", "length": lengths[0], "mean": bad, "solved": False},
            {"cell": "rnn", "length": lengths[1], "mean": bad, "solved": False},
        ]
        _write(os.path.join(d, f"{task}_length.json"), {"meta": _meta(task, cmd), "data": length})
        curve = [0.1, 0.01, 0.005] if task == "adding" else [0.5, 0.95, 0.97]
        curves = [
            {"cell": c, "step": s, "mean": m if c == "gru" else bad}
            for c in ("gru", "rnn")
            for s, m in zip((100, 200, 300), curve)
        ]
        meta = _meta(task, cmd, curve_length=lengths[0])
        _write(os.path.join(d, f"{task}_curves.json"), {"meta": meta, "data": curves})
        flow = [
            {
                "cell": c,
                "distance": k,
                "untrained_norm": 1.0 / (k + 1),
                "untrained_relative": 1.0 / (k + 1),
                "trained_norm": 0.0 if k == 120 else 0.5,
                "trained_relative": 0.0 if k == 120 else 0.5,
            }
            for c in ("gru", "rnn")
            for k in range(121)
        ]
        extra = {"gradflow_length": lengths[0]}
        if task == "adding":
            extra["gradflow_runs_note"] = "Trained curves: a note from the gradflow file."
            extra["provenance"] = {"git_commit": "abcdef0123", "cpu": "TestCPU", "cores": 2}
            cmd += " --gradflow_only"
        _write(
            os.path.join(d, f"{task}_gradflow.json"),
            {"meta": _meta(task, cmd, **extra), "data": flow},
        )
    _write(
        os.path.join(d, "scan_cost.json"),
        {
            "command": "python -m experiments.bench_scan ",
            "machine": {"cpu": "TestCPU", "cpu_count": 2, "backend": "cpu", "jax": "0.1"},
            "config": {},
            "results": [],
        },
    )


def test_committed_readme_is_rendered_from_its_json():
    with open(os.path.join(RESULTS, "README.md")) as f:
        committed = f.read()
    assert summary.render(RESULTS) == committed, (
        "results/longrange/README.md is stale: run python -m experiments.longrange_summary"
    )


def test_known_numbers_appear_in_tables(tmp_path):
    _make_results(tmp_path)
    text = summary.render(str(tmp_path))
    lines = text.splitlines()
    # length tables: bold = solved, longest solved length per cell
    assert "| cell | T=10 | T=20 | longest solved |" in lines
    assert "| gru | **0.001** | **0.002** | T=20 |" in lines  # adding: both solved
    assert "| rnn | 0.5 | 0.5 | none |" in lines
    assert "| gru | **0.95** | 1.9 | T=10 |" in lines  # copy: only the shorter solved
    assert "| gru | **0.95** | 1.9 | 0.5 s |" in lines  # recall: delays in seconds
    assert "| cell | 0.5 s | 2 s | longest solved |" in lines
    # curves: adding MSE 0.01 < 1/60 first at step 200; accuracy 0.95 > 0.9 at step 200
    assert text.count("| gru | step 200 | 0.005 |") == 1
    assert text.count("| gru | step 200 | 0.97 |") == 3
    assert text.count("| rnn | not within 300 steps | 0.5 |") == 1
    assert text.count("| rnn | not within 300 steps | 0.2 |") == 3
    assert "### Learning curves at T=10" in lines and "### Learning curves at 0.5 s" in lines
    # gradient flow at 10, 50, 100 and the largest distance (120); exact zero as 0
    assert "| cell | weights | 10 | 50 | 100 | 120 |" in lines
    assert text.count("| gru | untrained | 9.1e-02 | 2.0e-02 | 9.9e-03 | 8.3e-03 |") == 4
    assert text.count("| rnn | trained | 5.0e-01 | 5.0e-01 | 5.0e-01 | 0 |") == 4
    assert "Trained curves: a note from the gradflow file." in lines
    # thresholds from SOLVED, setups from the meta
    assert "adding test_loss < 0.0167" in text and "recall test_accuracy > 0.5" in text
    assert "Setup: setup of selective." in lines
    # reproduce: deduplicated commands, the smoke command; provenance per file
    assert lines.count("python -m experiments.longrange --task=copy") == 1
    assert "# writes copy_length, copy_curves, copy_gradflow" in lines
    assert "python -m experiments.longrange --task=adding --gradflow_only" in lines
    assert "python -m experiments.bench_scan" in lines
    assert summary.SMOKE_COMMAND in lines
    assert (
        "- [copy_curves.json](copy_curves.json): no provenance record (made before "
        "rnnbench/provenance.py); machine: 2 CPU cores, load average 1.0 at the end"
    ) in lines
    assert any(
        l.startswith("- [adding_gradflow.json](adding_gradflow.json): ") and "commit abcdef0" in l
        for l in lines
    )
    # files without provenance: exact zeros flagged, with the re-render command
    assert (
        "2 of its 484 norms are exactly 0 and may be that artefact; re-render with "
        "`python -m experiments.longrange --task=copy --gradflow_only`."
    ) in text
    assert "LRU" not in text  # the LRU note only when the adding grid has an unsolved lru


def test_cli_writes_the_rendered_readme(tmp_path):
    _make_results(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "experiments.longrange_summary", f"--results_dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "README.md") as f:
        assert f.read() == summary.render(str(tmp_path))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("copy_curves.json", None, "copy_curves.json: missing"),
        ("recall_length.json", "{not json", "recall_length.json: unreadable JSON"),
        ("scan_cost.json", None, "scan_cost.json: missing"),
        ("adding_gradflow.json", '{"meta": {}, "data": [{}]}', "adding_gradflow.json: meta lacks"),
    ],
)
def test_bad_file_is_named(tmp_path, name, content, message):
    _make_results(tmp_path)
    os.remove(tmp_path / name)
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=message):
        summary.render(str(tmp_path))


def test_missing_record_field_and_missing_dir_are_named(tmp_path):
    _make_results(tmp_path)
    path = tmp_path / "selective_length.json"
    doc = json.loads(path.read_text())
    del doc["data"][1]["solved"]
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"selective_length.json: data\[1\] lacks \['solved'\]"):
        summary.render(str(tmp_path))
    with pytest.raises(ValueError, match="nowhere: not a directory"):
        summary.render(str(tmp_path / "nowhere"))


def test_accelerator_scan_is_tabulated_beside_this_machines(tmp_path):
    """A full accelerator check's bench_scan (results/accelerator/<device>/scan/scan_cost.json)
    gets rows beside the CPU's, linking its plot; --quick and CPU checks are left out."""
    results = tmp_path / "longrange"
    results.mkdir()
    _make_results(results)
    cpu_scan = json.loads((results / "scan_cost.json").read_text())
    cpu_scan["config"] = {"batch": 8, "hidden": 128}
    cpu_scan["results"] = [{"T": 100, "variant": "lstm", "step_ms_median": 4.35}]
    _write(results / "scan_cost.json", cpu_scan)
    acc = tmp_path / "accelerator"
    for slug, report in (
        ("fake-gpu", {"quick": False, "device": {"platform": "gpu"}}),
        ("fake-gpu-quick", {"quick": True, "device": {"platform": "gpu"}}),
        ("cpu", {"quick": False, "device": {"platform": "cpu"}}),
    ):
        (acc / slug / "scan").mkdir(parents=True)
        _write(acc / f"{slug}.json", report)
        scan = {
            "command": "python -m experiments.bench_scan --T=1000",
            "provenance": {"accelerator": "Fake GPU", "git_commit": "0123456789"},
            "config": {"batch": 64, "hidden": 256},
            "results": [
                {"T": 1000, "variant": "lstm", "step_ms_median": 17.27},
                {"T": 1000, "variant": "mingru-par", "step_ms_median": 1.74},
            ],
        }
        _write(acc / slug / "scan" / "scan_cost.json", scan)
    lines = summary.render(str(results)).splitlines()
    assert "| machine (batch, hidden) | T | lstm | mingru-par |" in lines
    assert "| [CPU](scan_cost.png) (8, 128) | 100 | 4.35 |  |" in lines
    assert (
        "| [Fake GPU](../accelerator/fake-gpu_scan.png) (64, 256) | 1000 | 17.3 | 1.74 |" in lines
    )
    assert sum("fake-gpu-quick" in line or "../accelerator/cpu" in line for line in lines) == 0
    assert any(
        line.startswith("- [../accelerator/fake-gpu/scan/scan_cost.json]") and "0123456" in line
        for line in lines
    )
