"""Where a number came from: one record written by every entry point.

  record(settings=None) -> {"git_commit", "git_dirty", "date", "cpu", "cpu_isa", "cores",
                            "load_avg_1m", "accelerator", "device_count", "python",
                            "versions": {...}, "precision", **settings}

Every final.json, table header, benchmark JSON and long-range caption carries this record, so a
reader can tell which commit, machine, library versions and numeric settings made a number.
`one_line(record)` is its short human form for Markdown headers.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "torch")


def _git(*args: str) -> str | None:
    try:
        r = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def git_commit() -> str | None:
    """`$RNNBENCH_GIT_COMMIT` when set (a copy of a checkout sent to another machine, whose
    `.git`, if any, need not be the copied commit's), else HEAD of the checkout rnnbench is
    imported from (None outside one)."""
    return os.environ.get("RNNBENCH_GIT_COMMIT") or _git("rev-parse", "HEAD") or None


def git_dirty() -> bool | None:
    """Whether tracked files differ from HEAD; None where git cannot tell (no checkout, or the
    commit was given by `$RNNBENCH_GIT_COMMIT`)."""
    if os.environ.get("RNNBENCH_GIT_COMMIT") or _git("rev-parse", "HEAD") is None:
        return None
    return bool(_git("status", "--porcelain", "--untracked-files=no"))


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else what `platform` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_isa(path: str = "/proc/cpuinfo") -> str | None:
    """'family 25 model 17, avx512f': the CPU's family/model numbers and its widest vector
    extension from /proc/cpuinfo (None where it cannot tell). Two CPUs sold under one model name
    (e.g. "AMD EPYC") can differ here, and XLA compiles other float32 sums for them."""
    try:
        with open(path) as f:
            text = f.read().split("\n\n")[0]
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    simd = next(
        (x for x in ("avx512f", "avx2", "avx", "sse4_2", "asimd", "neon") if x in flags), None
    )
    ident = (
        f"family {fields['cpu family']} model {fields['model']}"
        if "cpu family" in fields and "model" in fields
        else None
    )
    found = [x for x in (ident, simd) if x]
    return ", ".join(found) or None


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def accelerator() -> tuple[str, int]:
    """(device kind, count) of JAX's default backend, e.g. ("cpu", 1) or ("NVIDIA H200", 1)."""
    import jax

    devices = jax.devices()
    kind = devices[0].device_kind if devices[0].platform != "cpu" else "cpu"
    return kind, len(devices)


def record(settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The provenance of a result made now, in this process. `settings` (e.g. the precision
    policy, vmapped seeds, parallelism) are merged in at the top level."""
    kind, count = accelerator()
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    out = {
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cpu_isa": cpu_isa(),
        "cores": os.cpu_count(),
        "load_avg_1m": load,
        "accelerator": kind,
        "device_count": count,
        "python": platform.python_version(),
        "versions": {p: version(p) for p in PACKAGES if version(p)},
    }
    out.update(settings or {})
    return out


def one_line(rec: dict[str, Any]) -> str:
    """'commit 1a2b3c4 (dirty), cpu: AMD EPYC ... x2 cores, load 0.1, jax 0.10.2, ...'"""
    commit = (rec.get("git_commit") or "unknown")[:7]
    dirty = " (dirty)" if rec.get("git_dirty") else ""
    where = rec.get("accelerator", "cpu")
    isa = f" ({rec['cpu_isa']})" if rec.get("cpu_isa") else ""
    where = (
        f"{rec.get('cpu')}{isa} x{rec.get('cores')} cores"
        if where == "cpu"
        else f"{rec.get('device_count', 1)}x {where}"
    )
    vers = ", ".join(f"{k} {v}" for k, v in (rec.get("versions") or {}).items())
    parts = [
        f"commit {commit}{dirty}",
        where,
        f"load {rec.get('load_avg_1m')}",
        f"Python {rec.get('python')}",
        vers,
    ]
    extra = {
        k: v
        for k, v in rec.items()
        if k
        not in (
            "git_commit",
            "git_dirty",
            "date",
            "cpu",
            "cpu_isa",
            "cores",
            "load_avg_1m",
            "accelerator",
            "device_count",
            "python",
            "versions",
        )
    }
    parts += [f"{k}={v}" for k, v in extra.items()]
    return f"{rec.get('date')}; " + "; ".join(p for p in parts if p)
