"""Transparent huge pages for glibc malloc, which JAX on CPU benefits from.

JAX CPU train steps here took thousands of page faults per step; with
`GLIBC_TUNABLES=glibc.malloc.hugetlb=1` set before the process starts they dropped from ~31,000
to ~300 per step (S1 LSTM) and CPU time per step fell to 0.74x (results/perf.md). The entry points
call `ensure()` so users get it without thinking; `RNNBENCH_NO_HUGETLB=1` opts out.
"""

from __future__ import annotations

import os
import sys

HUGETLB = "glibc.malloc.hugetlb=1"


def ensure(argv: list[str] | None = None) -> None:
    """Re-executes this process with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 unless it is set.

    Call it first thing in an entry point (before importing jax). No-op when the variable already
    has a hugetlb setting, when RNNBENCH_NO_HUGETLB=1, or off Linux.
    """
    if not sys.platform.startswith("linux") or os.environ.get("RNNBENCH_NO_HUGETLB") == "1":
        return
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return
    env = dict(os.environ)
    env["GLIBC_TUNABLES"] = f"{tunables}:{HUGETLB}" if tunables else HUGETLB
    argv = sys.argv if argv is None else argv
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:  # started as `python -m package.module`
        args = [sys.executable, "-m", spec.name] + argv[1:]
    else:
        args = [sys.executable] + argv
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, args, env)
