"""experiments/accelerator_check.py: missing packages named, parts recorded as they end (timeouts
killed, failures kept with their reason), files never complete-looking before the end; and the
whole `--quick` check on this CPU (slow)."""

import json
import os
import subprocess
import sys
import time

import pytest

from experiments import accelerator_check as check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_DEVICE = {
    "platform": "gpu",
    "device_kind": "Fake GPU X1",
    "device_count": 2,
    "torch_cuda": False,
    "provenance": {},
}


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_missing_packages_are_named_by_pip_name(monkeypatch):
    monkeypatch.setitem(check.PACKAGES, "no-such-package", "no_such_module_for_rnnbench")
    assert check.missing_packages(["numpy", "no-such-package", "pytest"]) == ["no-such-package"]
    assert "no-such-package" in check.missing_packages()
    assert check.PACKAGES["espeakng-loader"] == "espeakng_loader"


def test_run_commands_records_ok_failed_and_kills_a_timeout(tmp_path):
    t0 = time.monotonic()
    runs = check.run_commands(
        [
            (["sh", "-c", "echo hello"], str(tmp_path / "ok.log")),
            (["sh", "-c", "echo broken >&2; exit 3"], str(tmp_path / "bad.log")),
            # a child that starts a grandchild: the whole group is killed at the timeout
            (["sh", "-c", "sleep 30 & sleep 30"], str(tmp_path / "hang.log")),
        ],
        timeout=2.0,
    )
    assert time.monotonic() - t0 < 15
    assert [r["status"] for r in runs] == ["ok", "failed", "timeout"]
    assert [r["returncode"] for r in runs[:2]] == [0, 3]
    assert runs[0]["log_tail"].endswith("hello\n") and "broken" in runs[1]["log_tail"]
    assert runs[2]["seconds"] >= 2.0
    assert (tmp_path / "bad.log").read_text().startswith("$ sh -c ")


def test_slug_and_junit_counts(tmp_path):
    assert check.slug({"platform": "gpu", "device_kind": "NVIDIA H200"}, False) == "nvidia-h200"
    assert check.slug({"platform": "cpu", "device_kind": "cpu"}, True) == "cpu-quick"
    assert check.slug({}, False) == "unknown"
    xml = tmp_path / "r.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="3" '
        'tests="10" time="4.25"></testsuite></testsuites>'
    )
    assert check.junit_counts(str(xml)) == {
        "tests": 10,
        "passed": 4,
        "failed": 2,
        "errors": 1,
        "skipped": 3,
        "seconds": 4.2,
    }
    assert check.junit_counts(str(tmp_path / "absent.xml")) is None


def test_parts_are_recorded_in_order_and_files_say_incomplete_until_the_end(tmp_path, monkeypatch):
    out = tmp_path / "acc"
    seen = {}

    def probe(settings, log_dir):
        _write(os.path.join(log_dir, "device.log"), "PROBE\n")
        return dict(FAKE_DEVICE), {
            "command": "probe",
            "status": "ok",
            "returncode": 0,
            "seconds": 0.1,
            "log": "device.log",
            "log_tail": "x",
        }

    def tests_part(ctx, timeout):
        seen["json"] = json.loads((out / "fake-gpu-x1.json").read_text())
        seen["md"] = (out / "fake-gpu-x1.md").read_text()
        seen["timeout"] = timeout
        return check.run_commands(
            [(["sh", "-c", "echo 3 passed"], os.path.join(ctx.raw, "t.log"))], timeout
        ), {}

    def step_part(ctx, timeout):
        fail = "echo Traceback; echo ValueError: boom; exit 1"
        return check.run_commands(
            [(["sh", "-c", fail], os.path.join(ctx.raw, "s.log"))], timeout
        ), {}

    monkeypatch.setattr(check, "probe_device", probe)
    monkeypatch.setitem(check.PART_FUNCTIONS, "tests", tests_part)
    monkeypatch.setitem(check.PART_FUNCTIONS, "bench_step", step_part)
    monkeypatch.setitem(check.PACKAGES, "fake-pkg", "no_such_module_for_rnnbench")
    monkeypatch.setitem(check.NEEDS, "main_job", ("numpy", "fake-pkg"))
    (out / "fake-gpu-x1").mkdir(parents=True)
    (out / "fake-gpu-x1" / "stale.json").write_text("{}")  # an earlier run's file
    (out / "fake-gpu-x1_scan.png").write_text("old plot")
    logs = []
    report = check.run(
        ("tests", "main_job", "bench_step"), out_dir=str(out), budget_s=60, log=logs.append
    )

    # while the first part ran, the files said so
    assert seen["json"]["complete"] is False
    assert [p["status"] for p in seen["json"]["parts"]] == ["ok", "pending", "pending", "pending"]
    assert "**INCOMPLETE**" in seen["md"] and "tests, main_job, bench_step" in seen["md"]
    assert 0 < seen["timeout"] <= 60
    assert not (out / "fake-gpu-x1" / "stale.json").exists()
    assert not (out / "fake-gpu-x1_scan.png").exists()
    # at the end: every part's status, and why
    saved = json.loads((out / "fake-gpu-x1.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["complete"] is True and saved["all_ok"] is False
    parts = {p["name"]: p for p in saved["parts"]}
    assert [p["name"] for p in saved["parts"]] == ["device", "tests", "main_job", "bench_step"]
    assert parts["tests"]["status"] == "ok" and "log_tail" not in parts["tests"]["runs"][0]
    assert parts["main_job"] == {
        "name": "main_job",
        "status": "skipped",
        "note": "missing fake-pkg",
    }
    assert parts["bench_step"]["status"] == "failed"
    assert parts["bench_step"]["note"] == "failed: ValueError: boom"
    assert "fake-pkg" in saved["missing_packages"]
    assert any("MISSING PACKAGES" in m and "pip install" in m and "fake-pkg" in m for m in logs)
    md = (out / "fake-gpu-x1.md").read_text()
    assert "INCOMPLETE" not in md and "# rnnbench accelerator check: Fake GPU X1 x2" in md
    assert "| main_job | skipped | 0 | missing fake-pkg |" in md
    assert "| bench_step | failed |" in md and "ValueError: boom" in md
    assert "pip install" in md and "fake-pkg" in md


def test_no_device_skips_every_part(tmp_path, monkeypatch):
    def probe(settings, log_dir):
        _write(os.path.join(log_dir, "device.log"), "Traceback\nImportError: no jax\n")
        return {}, {
            "command": "probe",
            "status": "failed",
            "returncode": 1,
            "seconds": 0.1,
            "log": "device.log",
            "log_tail": "Traceback\nImportError: no jax\n",
        }

    monkeypatch.setattr(check, "probe_device", probe)
    report = check.run(
        ("tests", "bench_scan"), out_dir=str(tmp_path), budget_s=60, log=lambda *_: None
    )
    assert [(p["name"], p["status"]) for p in report["parts"]] == [
        ("device", "failed"),
        ("tests", "skipped"),
        ("bench_scan", "skipped"),
    ]
    assert report["parts"][0]["note"] == "failed: ImportError: no jax"
    assert (tmp_path / "unknown.json").exists() and (tmp_path / "unknown.md").exists()


def test_bad_flags_are_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        check.main(["--parts=tests,bench_gpu"])
    assert "--parts: unknown ['bench_gpu']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        check.main(["--precision=fp8"])
    assert "--precision: unknown precision policy 'fp8'" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_check_runs_every_part_on_cpu(tmp_path):
    """The real thing at tiny sizes (a few minutes on a shared 2-core CPU)."""
    env = dict(os.environ, RNNBENCH_CACHE=str(tmp_path / "cache"), WANDB_MODE="disabled")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.accelerator_check",
            "--quick",
            f"--out_dir={tmp_path}/acc",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    report = json.loads((tmp_path / "acc" / "cpu-quick.json").read_text())
    parts = {p["name"]: p for p in report["parts"]}
    assert {n: p["status"] for n, p in parts.items()} == dict.fromkeys(
        ("device", *check.PARTS), "ok"
    ), r.stdout + r.stderr
    assert r.returncode == 0 and report["complete"] and report["all_ok"]
    assert report["device"]["platform"] == "cpu" and report["quick"] is True
    assert report["device"]["provenance"]["precision"] == "float32"
    for counts in parts["tests"]["summary"].values():
        assert counts["passed"] == 1 and counts["failed"] == counts["skipped"] == 0
    job = parts["main_job"]["summary"]
    assert job["steps"] == 6 and 0.0 <= job["test_accuracy"] <= 1.0
    (row,) = parts["bench_step"]["summary"]["rows"]
    assert (row["shape"], row["cell"]) == ("S1", "lstm") and row["rnnbench_ms"] > 0
    assert [s["models"] for s in parts["bench_seeds"]["summary"]["rows"]] == [2]
    scan = parts["bench_scan"]["summary"]
    assert [t["T"] for t in scan["rows"]] == [8, 16] and scan["plot"] == "cpu-quick_scan.png"
    assert (tmp_path / "acc" / "cpu-quick_scan.png").stat().st_size > 1000
    md = (tmp_path / "acc" / "cpu-quick.md").read_text()
    assert "INCOMPLETE" not in md and "![scan cost](cpu-quick_scan.png)" in md
