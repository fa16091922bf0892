"""The whole path end to end, as CI proves it: a named sweep on tiny synthetic data, trained for
real in subprocesses, then its report; `reproduce --smoke` itself checks the table's rows and n."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["kws_cells", "ctc_cells"])
def test_reproduce_smoke(tmp_path, name):
    env = dict(os.environ, RNNBENCH_CACHE=str(tmp_path / "cache"), WANDB_MODE="disabled")
    r = subprocess.run([sys.executable, "-m", "experiments.reproduce", name, "--smoke",
                        f"--workdir={tmp_path}", "--parallel=2"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    out = tmp_path / "smoke" / "results"
    table = json.loads((out / f"{name}.json").read_text())
    rows = table["rows"] if isinstance(table, dict) and "rows" in table else table
    assert len(rows) >= 2
    md = (out / f"{name}.md").read_text()
    assert "python -m experiments" in md  # the command that reproduces it
    for png in (f"{name}_curves.png",):
        assert (out / png).stat().st_size > 10_000
