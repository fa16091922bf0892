r"""One prepared check of rnnbench on whatever accelerator JAX sees: correct, and how fast.

  python -m experiments.accelerator_check             # budget 7:50; the last part may be cut
  python -m experiments.accelerator_check --budget_s=560   # room for every part on an H200
  python -m experiments.accelerator_check --quick     # tiny sizes, for CPU and for its test
  python -m experiments.accelerator_check --parts=tests,main_job   # a subset

Parts, in this order; each runs in its own subprocess with a timeout, so a missing package, a
crash or a hang in one is recorded and the others still run:

  packages    which packages rnnbench needs are missing (pip names), before anything else; the
              parts that need them are skipped and say so
  device      what JAX sees (device kind and count), versions and commit (rnnbench/provenance.py)
  tests       the precision-sensitive tests at the default precision policy (exact float32):
              tests/test_interop_parity.py (torch), tests/test_fused.py (hand-written VJPs),
              tests/test_linear_rnn.py (parallel == sequential), tests/test_pallas_rnn.py
              (the kernels compiled); one pytest per file, all at once
  main_job    README command 1: experiments.train --config=experiments/configs/kws.py:lstm
  bench_step  the LSTM/GRU train step at S1, S3, G1 against torch (on CUDA when torch sees a
              GPU) and, on CPU, flax.linen; on a GPU also the faster-recurrence candidates
              (unroll auto / 1 / 16, the Pallas kernels, CUDA graphs for while loops) and the
              TF32 mode (`bench_step_runs`)
  bench_scan  parallel vs sequential scans at T = 1,000, 4,000, 16,000 (B 64, H 256) and its plot
  bench_seeds N = 8 and 32 seeds in one vmapped program against one after another; on a GPU
              N = 8 is also traced (jax.profiler: each device's busy time and top kernels, in
              bench_seeds_n8.json) and the LSTM recurrence alone is timed

Writes, under --out_dir (default results/accelerator), for the device's name in lower case
(e.g. `nvidia-h200`; `-quick` appended with --quick):
  <device>.json, <device>.md   every part's status, time, command and numbers, with provenance
  <device>_scan.png            bench_scan's plot
  <device>/                    the parts' own files (JSON, logs, junit XML, final.json)
The summary is rewritten after each part with `"complete": false` (and an INCOMPLETE banner in
the Markdown) until the last part has run, always atomically (rnnbench/atomic.py), so a killed
check never leaves files that look complete. Exit status 0 only if every part passed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

from rnnbench import atomic, grid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# In order of what a cut budget should keep: on the H200 the parts overran the default budget
# (results/accelerator/), so the last part may be cut short.
PARTS = ("tests", "main_job", "bench_step", "bench_scan", "bench_seeds")
# pip name -> module, for every package a part imports (pyproject dependencies, test extras)
PACKAGES = {
    "jax": "jax",
    "flax": "flax",
    "optax": "optax",
    "orbax-checkpoint": "orbax.checkpoint",
    "numpy": "numpy",
    "scipy": "scipy",
    "absl-py": "absl",
    "ml_collections": "ml_collections",
    "soundfile": "soundfile",
    "espeakng-loader": "espeakng_loader",
    "jiwer": "jiwer",
    "rapidfuzz": "rapidfuzz",
    "tqdm": "tqdm",
    "matplotlib": "matplotlib",
    "pytest": "pytest",
    "torch": "torch",
}
_TRAIN = (
    "jax",
    "flax",
    "optax",
    "orbax-checkpoint",
    "numpy",
    "scipy",
    "absl-py",
    "ml_collections",
    "soundfile",
    "espeakng-loader",
    "jiwer",
    "rapidfuzz",
    "tqdm",
)
NEEDS = {  # without these a part cannot run at all (torch is optional where noted)
    "tests": ("jax", "flax", "numpy", "pytest"),
    "main_job": _TRAIN,
    "bench_step": ("jax", "flax", "optax", "numpy"),  # torch: compared against when present
    "bench_seeds": _TRAIN,
    "bench_scan": ("jax", "flax", "optax", "numpy", "matplotlib"),
}
TIMEOUT_S = {
    "device": 120,
    "tests": 180,
    "main_job": 150,
    "bench_seeds": 130,
    "bench_scan": 200,
    "bench_step": 300,  # its runs one after another (bench_step_runs)
}
TEST_FILES = (
    "tests/test_interop_parity.py",
    "tests/test_fused.py",
    "tests/test_linear_rnn.py",
    "tests/test_pallas_rnn.py",  # on a GPU: the compiled kernels against fused.py
)
# files run in this many pytest-xdist workers when xdist is installed (not with --quick)
SHARDED_TESTS = {"tests/test_interop_parity.py": 4}
# --quick: one test of each file
QUICK_TESTS = {
    "tests/test_interop_parity.py": "parity_relu_rnn",
    "tests/test_fused.py": "functions_directly_match_cell_steps",
    "tests/test_linear_rnn.py": "mingru_and_minlstm_match_float64",
    "tests/test_pallas_rnn.py": "bad_shapes_name_the_function_and_shapes",
}
MAIN_JOB = (
    "-m",
    "experiments.train",
    "--config=experiments/configs/kws.py:lstm",
    "--wandb=disabled",
    "--quiet",
)
QUICK_TRAIN = grid.TINY_RUN + grid.TINY_DATA  # --quick: the main job as a tiny run
SEEDS_N = (8, 32)
SCAN = (
    "--T=1000,4000,16000",
    "--cells=mingru,minlstm,lru,lstm,gru",
    "--batch=64",
    "--hidden=256",
    "--repeats=3",
)
QUICK_SCAN = ("--T=8,16", "--cells=mingru,lstm", "--batch=2", "--hidden=8", "--repeats=1")

_PROBE = """
import json, sys
from rnnbench import provenance
import jax
rec = provenance.record(json.loads(sys.argv[1]))
dev = jax.devices()[0]
try:
    import torch
    torch_cuda = bool(torch.cuda.is_available())
except ImportError:
    torch_cuda = None
print("PROBE " + json.dumps({"platform": dev.platform, "device_kind": dev.device_kind,
                            "device_count": jax.device_count(), "torch_cuda": torch_cuda,
                            "provenance": rec}))
"""


# ----------------------------------------------------------------------------- running


def missing_packages(names=PACKAGES) -> list[str]:
    """The pip names in `names` whose module this interpreter cannot find (nothing imported)."""
    out = []
    for pip_name in names:
        try:
            found = importlib.util.find_spec(PACKAGES[pip_name]) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(pip_name)
    return out


def run_commands(commands, timeout: float, env=None) -> list[dict]:
    """Runs `commands` [(argv, log_path)] at the same time, each in its own process group, and
    kills any still running after `timeout` s. One dict per command: status ("ok", "failed" or
    "timeout"), returncode, seconds, the command and the tail of its output (the whole output
    is in log_path)."""
    env = {**os.environ, **(env or {})}
    started, results = [], []
    with contextlib.ExitStack() as stack:
        for argv, log_path in commands:
            log = stack.enter_context(open(log_path, "w"))
            log.write(f"$ {shlex.join(argv)}\n")
            log.flush()
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            started.append((argv, log_path, proc, time.monotonic()))
        deadline = time.monotonic() + timeout
        for argv, log_path, proc, t0 in started:
            try:
                rc = proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
                status = "ok" if rc == 0 else "failed"
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the child and anything it started
                rc = proc.wait()
                status = "timeout"
            results.append(
                {
                    "command": shlex.join(argv),
                    "status": status,
                    "returncode": rc,
                    "seconds": round(time.monotonic() - t0, 1),
                    "log": os.path.basename(log_path),
                }
            )
    for r, (_, log_path, _, _) in zip(results, started):
        with open(log_path, errors="replace") as f:
            r["log_tail"] = f.read()[-3000:]
    return results


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _combine(runs: list[dict]) -> str:
    """The status of a part from its runs: the worst of timeout, failed, skipped, ok."""
    for status in ("timeout", "failed", "skipped"):
        if any(r["status"] == status for r in runs):
            return status
    return "ok"


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- parts


def junit_counts(path: str) -> dict | None:
    """{tests, passed, failed, errors, skipped, seconds} from a pytest --junitxml file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    return {
        "tests": n["tests"],
        "passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"],
        "failed": n["failures"],
        "errors": n["errors"],
        "skipped": n["skipped"],
        "seconds": round(float(suite.get("time", 0.0)), 1),
    }


def part_tests(ctx, timeout):
    commands, files = [], []
    for path in TEST_FILES:
        name = os.path.splitext(os.path.basename(path))[0]
        xml = os.path.join(ctx.raw, f"{name}.xml")
        argv = _python("-m", "pytest", "-q", "-p", "no:cacheprovider", path, f"--junitxml={xml}")
        if ctx.quick:
            argv += ["-k", QUICK_TESTS[path]]
        elif path in SHARDED_TESTS and importlib.util.find_spec("xdist") is not None:
            argv += ["-n", str(SHARDED_TESTS[path])]  # compile-bound: 149 s alone on the H200
        commands.append((argv, os.path.join(ctx.raw, f"{name}.log")))
        files.append((path, xml))
    # Concurrent processes on one GPU: no process may take 75% of its memory up front.
    runs = run_commands(commands, timeout, env={"XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    summary = {}
    for (path, xml), run in zip(files, runs):
        summary[path] = junit_counts(xml)
        if summary[path] and summary[path]["skipped"] and run["status"] == "ok":
            run["status"] = "skipped"  # e.g. torch missing: the parity was not checked
    return runs, summary


def part_main_job(ctx, timeout):
    with tempfile.TemporaryDirectory(prefix="accelerator-check-") as workdir:
        argv = _python(*MAIN_JOB, f"--workdir={workdir}", f"--config.precision={ctx.precision}")
        if ctx.quick:
            argv += [f"--config.{o}" for o in QUICK_TRAIN]
        runs = run_commands([(argv, os.path.join(ctx.raw, "main_job.log"))], timeout)
        final = _read_json(os.path.join(workdir, "final.json"))
    if final is not None:
        atomic.write_json(os.path.join(ctx.raw, "main_job_final.json"), final)
    keys = (
        "test_accuracy",
        "val_accuracy",
        "test_cer",
        "test_wer",
        "num_params",
        "steps",
        "steps_per_s",
        "train_time_s",
        "wall_time_s",
        "precision",
    )
    summary = {k: final[k] for k in keys if final and k in final}
    summary["command_wall_s"] = runs[0]["seconds"]
    return runs, summary


# XLA's CUDA-graph command buffers for while loops too: one graph launch per scan instead of a
# few kernel launches per time step (a candidate where the scan is launch-bound: S3)
WHILE_GRAPHS_XLA_FLAGS = (
    "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,CONDITIONAL,WHILE"
)


def bench_step_runs(ctx) -> list[tuple[str, list[str], float, dict]]:
    """[(name, flags for experiments.bench_step, the most seconds it may take, extra
    environment)], in order.

    main        the LSTM and GRU train step at S1, S3 and G1 against torch (on CUDA when torch
                sees a GPU, TF32 off at the exact policy: like for like) and, on CPU, flax.linen
    candidates  on a GPU: the faster-recurrence candidates side by side at S3, where the scan
                lost most to cuDNN: unroll "auto" (rnnbench: 8 there), 1 and 16, the Pallas
                kernels
    tf32        on a GPU at the exact policy: S3 and G1 again with TF32 matmuls in both rnnbench
                and torch (the fast mode)
    while_graphs  on a GPU: rnnbench at S3 with XLA's command buffers for while loops
                (WHILE_GRAPHS_XLA_FLAGS), to compare with the candidates run's rnnbench
    """
    torch_ok = "torch" not in ctx.missing
    torch_device = "cuda" if ctx.device.get("torch_cuda") else "cpu"
    gpu = ctx.device.get("platform") == "gpu"
    common = ["--cells=lstm,gru", "--repeats=10", "--warmup=2"]
    if torch_ok:
        common.append(f"--torch_device={torch_device}")
    if ctx.quick:
        fws = "rnnbench,torch" if torch_ok else "rnnbench,flax"
        return [
            (
                "main",
                ["--shapes=S1", "--cells=lstm", f"--frameworks={fws}", "--repeats=2", "--warmup=1"]
                + [f"--precision={ctx.precision}"],
                TIMEOUT_S["bench_step"],
                {},
            )
        ]
    main = ["rnnbench"] + (["torch"] if torch_ok else []) + ([] if gpu else ["flax"])
    runs = [
        (
            "main",
            ["--shapes=S1,S3,G1", f"--frameworks={','.join(main)}", f"--precision={ctx.precision}"],
            150,
            {},
        )
    ]
    if gpu:
        candidates = "rnnbench,rnnbench_unroll1,rnnbench_unroll16,rnnbench_pallas"
        flags = ["--shapes=S3", f"--frameworks={candidates}", f"--precision={ctx.precision}"]
        runs.append(("candidates", flags, 75, {}))
        if ctx.precision == "float32":
            runs.append(
                (
                    "tf32",
                    ["--shapes=S3,G1", f"--frameworks={','.join(main)}", "--precision=tf32"],
                    75,
                    {},
                )
            )
        xla_flags = f"{os.environ.get('XLA_FLAGS', '')} {WHILE_GRAPHS_XLA_FLAGS}".strip()
        flags = ["--shapes=S3", "--frameworks=rnnbench", f"--precision={ctx.precision}"]
        runs.append(("while_graphs", flags, 45, {"XLA_FLAGS": xla_flags}))
    return [(name, common + flags, t, env) for name, flags, t, env in runs]


def part_bench_step(ctx, timeout):
    runs, rows, errors = [], [], []
    deadline = time.monotonic() + timeout
    for name, flags, limit, env in bench_step_runs(ctx):  # one after another: each is a timing
        out = os.path.join(ctx.raw, f"bench_step_{name}.json")
        argv = _python("-m", "experiments.bench_step", *flags, f"--out={out}")
        left = min(limit, deadline - time.monotonic())
        if left < 5:
            runs.append(_not_started(argv))
            continue
        runs += run_commands([(argv, out.replace(".json", ".log"))], left, env=env)
        report = _read_json(out) or {}  # rows are written as they finish: a timeout keeps them
        for r in report.get("results", []):
            row = {"run": name, "shape": r["shape"], "cell": r["cell"]}
            row.update({f"{fw}_ms": round(v["median_ms"], 2) for fw, v in r["frameworks"].items()})
            for k in ("ratio_rnnbench_torch", "ratio_rnnbench_flax", "ratio_pallas_scan"):
                if k in r:
                    row[k] = round(r[k], 3)
            rows.append(row)
            errors += [
                f"{name} {r['shape']} {r['cell']} {fw}: {e}"
                for fw, e in r.get("errors", {}).items()
            ]
    torch_device = None
    if "torch" not in ctx.missing:
        torch_device = "cuda" if ctx.device.get("torch_cuda") else "cpu"
    return runs, {"rows": rows, "torch_device": torch_device, "errors": errors}


def _not_started(argv) -> dict:
    return {
        "command": shlex.join(argv),
        "status": "timeout",
        "returncode": None,
        "seconds": 0.0,
        "log": None,
        "log_tail": "not started: no time left",
    }


def part_bench_seeds(ctx, timeout):
    runs, rows = [], []
    deadline = time.monotonic() + timeout
    # N = 8 and 32 (2 with --quick); on a GPU also where N = 8 loses: its profile, and the
    # LSTM recurrence alone (bench_seeds --profile / --part)
    todo = [(n, "", []) for n in ((2,) if ctx.quick else SEEDS_N)]
    traces = tempfile.mkdtemp(prefix="accelerator-seeds-trace-")  # large: not kept
    if ctx.device.get("platform") == "gpu" and not ctx.quick:
        todo[0] = (8, "", [f"--profile={traces}"])  # each device's busy time and top kernels
        todo.append((8, "_recurrence", ["--part=recurrence"]))
    for n, tag, flags in todo:  # one after another: each is a timing
        out = os.path.join(ctx.raw, f"bench_seeds_n{n}{tag}.json")
        argv = _python(
            "-m",
            "experiments.bench_seeds",
            f"--models={n}",
            f"--hidden={8 if ctx.quick else 64}",
            f"--repeats={1 if ctx.quick else 5}",
            *flags,
            f"--out={out}",
        )
        left = deadline - time.monotonic()
        if left < 1:
            runs.append(_not_started(argv))
            continue
        runs += run_commands([(argv, out.replace(".json", ".log"))], left)
        if runs[-1]["status"] == "ok":
            for r in (_read_json(out) or {}).get("results", []):
                rows.append(
                    {"run": tag.lstrip("_") or "step"}
                    | {
                        k: round(r[k], 3) if isinstance(r[k], float) else r[k]
                        for k in (
                            "models",
                            "hidden",
                            "sequential_ms",
                            "vmapped_ms",
                            "throughput_ratio",
                        )
                    }
                )
                if "profile" in r:  # busy time of the devices while N steps ran each way
                    rows[-1]["busy_sequential_ms"] = _busy_ms(r["profile"], "single")
                    rows[-1]["busy_vmapped_ms"] = _busy_ms(r["profile"], "vmapped")
    shutil.rmtree(traces, ignore_errors=True)
    return runs, {"rows": rows}


def _busy_ms(profile: dict, kind: str) -> float:
    """Device busy time per traced call of `kind` (single: per N calls), ms."""
    busy = sum(p["busy_us"] for p in profile[kind]["processes"].values())
    return round(busy / profile["reps"] / 1e3, 3)


def part_bench_scan(ctx, timeout):
    scan_dir = os.path.join(ctx.raw, "scan")
    argv = _python(
        "-m",
        "experiments.bench_scan",
        *(QUICK_SCAN if ctx.quick else SCAN),
        f"--out-dir={scan_dir}",
    )
    runs = run_commands([(argv, os.path.join(ctx.raw, "bench_scan.log"))], timeout)
    # bench_scan rewrites scan_cost.json after each T: a timeout keeps the lengths it finished,
    # and `--from-json` draws their plot.
    report = _read_json(os.path.join(scan_dir, "scan_cost.json")) or {}
    results = report.get("results", [])
    if results and runs[0]["status"] == "timeout":
        runs += run_commands(
            [
                (
                    _python(
                        "-m",
                        "experiments.bench_scan",
                        f"--out-dir={scan_dir}",
                        f"--from-json={os.path.join(scan_dir, 'scan_cost.json')}",
                    ),
                    os.path.join(ctx.raw, "bench_scan_plot.log"),
                )
            ],
            60,
        )
    png = os.path.join(scan_dir, "scan_cost.png")
    if results and os.path.exists(png):
        with atomic.replacing(ctx.plot) as tmp:
            shutil.copyfile(png, tmp)
    by_t = {}
    for r in results:  # one row per T, one column per variant (ms per train step)
        by_t.setdefault(r["T"], {"T": r["T"]})[r["variant"]] = round(r["step_ms_median"], 2)
    return runs, {
        "rows": list(by_t.values()),
        "plot": os.path.basename(ctx.plot) if os.path.exists(ctx.plot) else None,
        "partial": runs[0]["status"] != "ok" and bool(results),
    }


PART_FUNCTIONS = {
    "tests": part_tests,
    "main_job": part_main_job,
    "bench_step": part_bench_step,
    "bench_seeds": part_bench_seeds,
    "bench_scan": part_bench_scan,
}


# ----------------------------------------------------------------------------- the report


def probe_device(settings: dict, log_dir: str) -> tuple[dict, dict]:
    """(what JAX sees: platform, device kind and count, whether torch sees CUDA, the provenance
    record with `settings`; the probe's run record). From a subprocess, so that this process
    never holds the accelerator; {} when JAX cannot start (the log in `log_dir`/device.log)."""
    settings = json.dumps({"check": "accelerator_check", **settings})
    probe = run_commands(
        [(_python("-c", _PROBE, settings), os.path.join(log_dir, "device.log"))],
        TIMEOUT_S["device"],
        env={"XLA_PYTHON_CLIENT_PREALLOCATE": "false"},
    )[0]
    device = {}
    for line in probe["log_tail"].splitlines():
        if line.startswith("PROBE "):
            device = json.loads(line[len("PROBE ") :])
    return device, probe


def slug(device: dict, quick: bool) -> str:
    """'nvidia-h200' for device kind 'NVIDIA H200', 'cpu' on CPU; '-quick' with --quick."""
    kind = "cpu" if device.get("platform") == "cpu" else device.get("device_kind", "unknown")
    name = re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-") or "unknown"
    return name + ("-quick" if quick else "")


def markdown(report: dict) -> str:
    from rnnbench import provenance

    dev = report["device"]
    title = f"{dev.get('device_kind', 'unknown device')} x{dev.get('device_count', '?')}"
    lines = [f"# rnnbench accelerator check: {title}", ""]
    if not report["complete"]:
        pending = ", ".join(p["name"] for p in report["parts"] if p["status"] == "pending")
        banner = (
            f"**INCOMPLETE**: the check has not finished (not run yet: "
            f"{pending or 'none'}); these are partial results."
        )
        lines += [banner, ""]
    lines += [f"Command: `{report['command']}`", ""]
    if dev.get("provenance"):
        lines += [f"Provenance: {provenance.one_line(dev['provenance'])}.", ""]
    quick = " (--quick: tiny sizes, not a measurement)" if report["quick"] else ""
    policy = (
        f"Precision policy `{report['precision']}` for the main job and the benchmarks "
        "that take one; the tests run at the default, exact float32. Wall time of the "
        f"check {report['wall_s']:.0f} s{quick}."
    )
    lines += [policy, ""]
    missing = report["missing_packages"]
    if missing:
        lines += [
            f"Missing packages: {', '.join(missing)} (`pip install {' '.join(missing)}`).",
            "",
        ]
    lines += ["| part | status | seconds | notes |", "|---|---|---:|---|"]
    for p in report["parts"]:
        lines.append(
            f"| {p['name']} | {p['status']} | {p.get('seconds', 0):.0f} | {p.get('note', '')} |"
        )
    parts = {p["name"]: p for p in report["parts"]}

    def summary(name):
        return (parts.get(name) or {}).get("summary") or {}

    if summary("tests"):
        lines += [
            "",
            "## Precision-sensitive tests (exact float32)",
            "",
            "| file | passed | failed | errors | skipped | seconds |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for path, c in summary("tests").items():
            cells = (
                [str(c[k]) for k in ("passed", "failed", "errors", "skipped", "seconds")]
                if c
                else ["no report"] + [""] * 4
            )
            lines.append(f"| {path} | " + " | ".join(cells) + " |")
    if summary("main_job"):
        s = summary("main_job")
        lines += [
            "",
            "## Main job (README command 1)",
            "",
            "| " + " | ".join(s) + " |",
            "|" + "---|" * len(s),
            "| "
            + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in s.values())
            + " |",
        ]
    for name, title in (
        ("bench_step", "Train step (ms, medians)"),
        ("bench_seeds", "Seeds in one program (ms, medians)"),
        ("bench_scan", "Parallel vs sequential scans (ms per train step)"),
    ):
        rows = summary(name).get("rows")
        if not rows:
            continue
        keys = list(dict.fromkeys(k for r in rows for k in r))
        lines += ["", f"## {title}", ""]
        if name == "bench_step" and summary(name).get("torch_device"):
            lines += [f"torch on {summary(name)['torch_device']}.", ""]
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
        if name == "bench_step" and summary(name).get("errors"):
            lines += ["", "Failed (left out of their rows):", ""]
            lines += [f"- {e}" for e in summary(name)["errors"]]
        if name == "bench_scan" and summary(name).get("partial"):
            lines += ["", "Partial: bench_scan stopped before its last length."]
        if name == "bench_scan" and summary(name).get("plot"):
            lines += ["", f"![scan cost]({summary(name)['plot']})"]
    return "\n".join(lines) + "\n"


def _why(status: str, runs: list[dict]) -> dict:
    """{"note": the last line of the first failed run's output} unless `status` is ok; drops the
    output tails of the runs that went well (each whole output is in the part's folder)."""
    bad = [r for r in runs if r["status"] != "ok"]
    for r in runs:
        if r["status"] == "ok":
            r.pop("log_tail", None)
    if status == "ok" or not bad:
        return {}
    last = [x for x in bad[0].get("log_tail", "").splitlines() if x.strip()][-1:]
    return {"note": f"{bad[0]['status']}: {last[0][:200] if last else 'no output'}"}


def run_part(name: str, ctx, timeout: float) -> dict:
    """Runs part `name`; returns its entry: status, seconds, runs, summary and a note."""
    t0 = time.monotonic()
    runs, summary = PART_FUNCTIONS[name](ctx, timeout)
    status = _combine(runs)
    entry = {
        "status": status,
        "seconds": round(time.monotonic() - t0, 1),
        "runs": runs,
        "summary": summary,
        **_why(status, runs),
    }
    if name == "tests" and any(summary.values()):  # the counts say more than a last line
        entry["note"] = "; ".join(
            f"{os.path.basename(f)}: {c['passed']} passed, {c['failed']} failed, "
            f"{c['errors']} errors, {c['skipped']} skipped"
            if c
            else f"{os.path.basename(f)}: no report"
            for f, c in summary.items()
        )
    elif name == "bench_step" and status == "ok":
        notes = [f"torch on {summary['torch_device']}"] if summary.get("torch_device") else []
        if summary.get("errors"):
            notes.append(f"{len(summary['errors'])} framework(s) failed, listed below")
        entry["note"] = "; ".join(notes)
    return entry


class _Context:
    def __init__(self, quick, precision, device, missing, raw, plot):
        self.quick, self.precision, self.device = quick, precision, device
        self.missing, self.raw, self.plot = missing, raw, plot


def run(
    parts=PARTS,
    *,
    quick=False,
    precision="float32",
    out_dir="results/accelerator",
    budget_s=470.0,
    log=print,
) -> dict:
    """Runs the check; returns the report it wrote to `<out_dir>/<device>.json`."""
    t_start = time.monotonic()
    deadline = t_start + budget_s
    command = shlex.join(["python", "-m", "experiments.accelerator_check", *sys.argv[1:]])
    missing = missing_packages()
    if missing:
        log(f"MISSING PACKAGES: {', '.join(missing)}  ->  pip install {' '.join(missing)}")
    else:
        log("packages: all present")

    with tempfile.TemporaryDirectory(prefix="accelerator-probe-") as probe_dir:
        device, probe = probe_device({"precision": precision, "quick": quick}, probe_dir)
        log(
            f"device: {device.get('device_kind', 'unknown (see device.log)')} "
            f"x{device.get('device_count', '?')}"
        )
        name = slug(device, quick)
        raw = os.path.join(out_dir, name)
        shutil.rmtree(raw, ignore_errors=True)  # this check's own files from an earlier run
        os.makedirs(raw)
        shutil.move(os.path.join(probe_dir, "device.log"), os.path.join(raw, "device.log"))
    plot = os.path.join(out_dir, f"{name}_scan.png")
    if os.path.exists(plot):
        os.remove(plot)  # an earlier run's plot must not sit beside this run's report
    probe_entry = {
        "name": "device",
        "status": probe["status"] if device else "failed",
        "seconds": probe["seconds"],
        "runs": [probe],
    }
    probe_entry.update(_why(probe_entry["status"], [probe]))
    report = {
        "command": command,
        "quick": quick,
        "precision": precision,
        "complete": False,
        "all_ok": False,
        "device": device,
        "missing_packages": missing,
        "wall_s": 0.0,
        "parts": [probe_entry],
    }
    report["parts"] += [{"name": p, "status": "pending"} for p in parts]
    paths = (os.path.join(out_dir, f"{name}.json"), os.path.join(out_dir, f"{name}.md"))

    def write():
        report["wall_s"] = round(time.monotonic() - t_start, 1)
        atomic.write_json(paths[0], report)
        atomic.write_text(paths[1], markdown(report))

    write()
    ctx = _Context(quick, precision, device, missing, raw, plot)
    for entry in report["parts"][1:]:
        p = entry["name"]
        lacking = [m for m in NEEDS[p] if m in missing]
        left = deadline - time.monotonic()
        if not device:
            entry.update(status="skipped", note="JAX found no device (see device.log)")
        elif lacking:
            entry.update(status="skipped", note=f"missing {', '.join(lacking)}")
        elif left < 10:
            entry.update(status="skipped", note=f"no time left in the {budget_s:.0f} s budget")
        else:
            log(f"{p}: running (timeout {min(TIMEOUT_S[p], left):.0f} s)")
            entry.update(run_part(p, ctx, min(TIMEOUT_S[p], left)))
        log(f"{p}: {entry['status']} {entry.get('note', '')}".rstrip())
        write()
    report["complete"] = True
    report["all_ok"] = all(p["status"] == "ok" for p in report["parts"])
    write()
    log(f"wrote {paths[0]} and {paths[1]}" + (f" and {plot}" if os.path.exists(plot) else ""))
    return report


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes everywhere (one test per file, 6 training steps, ...)",
    )
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {','.join(PARTS)}")
    p.add_argument(
        "--precision",
        default="float32",
        help="precision policy of the main job and the benchmarks that take one "
        "(rnnbench/precision.py); the tests always run exact",
    )
    p.add_argument("--out_dir", default="results/accelerator")
    p.add_argument(
        "--budget_s",
        type=float,
        default=470.0,
        help="seconds for the whole check; a part gets what is left, at most its own timeout",
    )
    args = p.parse_args(argv)
    parts = tuple(x for x in args.parts.split(",") if x)
    bad = [x for x in parts if x not in PARTS]
    if bad:
        p.error(f"--parts: unknown {bad}; expected a comma list of {','.join(PARTS)}")
    from rnnbench import precision

    try:
        precision.check(args.precision)
    except ValueError as e:
        p.error(f"--precision: {e}")
    report = run(
        parts,
        quick=args.quick,
        precision=args.precision,
        out_dir=args.out_dir,
        budget_s=args.budget_s,
        log=lambda s: print(s, flush=True),
    )
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
