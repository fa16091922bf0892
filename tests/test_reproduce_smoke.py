"""The whole path end to end, as CI proves it: a named sweep on tiny synthetic data, trained for
real in subprocesses, then its report; `reproduce --smoke` itself checks the table's rows and n,
and this test checks the table against what the runs wrote."""

import json
import os
import statistics
import subprocess
import sys

import pytest

from experiments import reproduce
from rnnbench import grid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _smoke(name, tmp_path, *flags) -> subprocess.CompletedProcess:
    """`python -m experiments.reproduce NAME --smoke` under tmp_path; asserts it exits 0."""
    env = dict(os.environ, RNNBENCH_CACHE=str(tmp_path / "cache"), WANDB_MODE="disabled")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.reproduce",
            name,
            "--smoke",
            f"--workdir={tmp_path}",
            *flags,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    return r


@pytest.mark.slow
@pytest.mark.parametrize("name", ["kws_cells", "ctc_cells"])
def test_reproduce_smoke(tmp_path, name):
    _smoke(name, tmp_path, "--parallel=2")
    entry = reproduce.SWEEPS[name]
    expected = reproduce.smoke_grid(reproduce.load_grid(entry))  # 2 configurations x seeds 0, 1
    sweep_dir = tmp_path / "smoke" / name
    out = tmp_path / "smoke" / "results"
    rep = json.loads((out / f"{name}.json").read_text())

    # one row per configuration of the smoke grid, in its order, each from its 2 finished seeds
    configs = [grid.without_seed(d) for d in expected[::2]]
    assert [row["config"] for row in rep["rows"]] == configs
    primary = rep["primary_metric"]
    assert primary == ("test_accuracy" if name.startswith("kws") else "test_cer")
    named = list(zip(expected, grid.run_names(expected)))  # as the sweep runner names them
    groups = grid.group_by_config(named, lambda x: x[0]).values()
    for row, runs in zip(rep["rows"], groups, strict=True):
        assert (row["n"], row["expected"]) == (2, 2) and row["failed"] == row["missing"] == []
        finals = []
        for _, run_name in runs:
            with open(sweep_dir / run_name / "final.json") as f:
                finals.append(json.load(f))
        assert [f["seed"] for f in finals] == [0, 1]
        assert [f["steps"] for f in finals] == [6, 6]  # the smoke override, not the config's
        # as the entry says: both seeds of a configuration trained as one program, or apart
        programs = [f["models_in_program"] for f in finals]
        assert programs == ([2, 2] if entry.vmap_seeds else [1, 1])
        # the table's mean and std are those of the runs' own final.json values
        values = [f[primary] for f in finals]
        assert row["metrics"][primary]["mean"] == pytest.approx(statistics.mean(values))
        assert row["metrics"][primary]["std"] == pytest.approx(statistics.stdev(values))

    # the runner recorded how it ran, and the header says so after the reproduce command
    with open(sweep_dir / "sweep.json") as f:
        runner = json.load(f)["runner"]
    assert (runner["backend"], runner["parallel"], runner["vmap_seeds"]) == (
        "local",
        2,
        entry.vmap_seeds,
    )
    md = (out / f"{name}.md").read_text().splitlines()
    command = f"python -m experiments.reproduce {name} --smoke --workdir={tmp_path}"
    assert md[4:7] == ["```", command, "```"]
    sweep_cmd = next(line for line in md if line.startswith("python -m experiments.sweep"))
    assert f"--parallel=2 --vmap_seeds={str(entry.vmap_seeds).lower()}" in sweep_cmd
    assert "--override=num_steps=6" in sweep_cmd and "--wandb=disabled" in sweep_cmd
    runner_line = next(line for line in md if line.startswith("- runner: "))
    assert runner_line.startswith(
        f"- runner: local backend, --parallel=2, --vmap_seeds={str(entry.vmap_seeds).lower()}; "
    )
    assert sum(line.startswith("| ") for line in md) == 1 + len(configs)
    for png in (f"{name}_curves.png", f"{name}_params.png"):
        data = (out / png).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


@pytest.mark.slow
def test_reproduce_smoke_decoders(tmp_path):
    """The decoder comparison end to end: 2 tiny CTC runs trained by the sweep runner, then
    experiments.decoders on them; the table's greedy row is the runs' own final evaluation."""
    name = "ctc_decoders"
    r = _smoke(name, tmp_path)
    assert "smoke check passed: 3 rows from 2 runs" in r.stdout
    rep = json.loads((tmp_path / "smoke" / "results" / f"{name}.json").read_text())
    finals = []
    for run in rep["runs"]:
        with open(os.path.join(run["workdir"], "final.json")) as f:
            finals.append(json.load(f))
    assert [f["seed"] for f in finals] == [0, 1] and [f["steps"] for f in finals] == [6, 6]
    greedy = {row["decoder"]: row for row in rep["rows"]}["greedy"]["test_cer"]
    assert greedy["values"] == pytest.approx([f["test_cer"] for f in finals])
    assert rep["decoders"]["beam"] == {"beam": 2, "token_prune": 5}
    md = (tmp_path / "smoke" / "results" / f"{name}.md").read_text().splitlines()
    command = f"python -m experiments.reproduce {name} --smoke --workdir={tmp_path}"
    assert md[4:7] == ["```", command, "```"]
    assert any(line.startswith("python -m experiments.decoders --workdirs=") for line in md)
    assert sum(line.startswith("| ") for line in md) == 4


@pytest.mark.slow
def test_reproduce_smoke_slu_pipeline(tmp_path):
    """The SLU pipeline table end to end: 2 tiny recognisers trained by the sweep runner, each
    scored by experiments.slu_pipeline, then the report, whose columns are the pipeline's."""
    name = "slu_pipeline_gru_seed0"
    _smoke(name, tmp_path)
    rep = json.loads((tmp_path / "smoke" / "results" / f"{name}.json").read_text())
    assert rep["task"] == "intent_pipeline" and rep["primary_metric"] == "test_meaning_accuracy"
    expected = reproduce.smoke_grid(reproduce.load_grid(reproduce.SWEEPS[name]))
    sweep_dir = tmp_path / "smoke" / name
    for row, run_name in zip(rep["rows"], grid.run_names(expected), strict=True):
        scored = json.loads((sweep_dir / run_name / "slu_pipeline_test.json").read_text())
        assert scored["recogniser_kind"] == "ctc" and scored["split"] == "test"
        for key in ("test_meaning_accuracy", "test_reference_meaning_accuracy", "test_cer"):
            assert row["metrics"][key]["mean"] == pytest.approx(scored[key]), key
    md = (tmp_path / "smoke" / "results" / f"{name}.md").read_text()
    assert f"python -m experiments.slu_pipeline --sweep_dir={sweep_dir}" in md
    assert "| parser on reference transcripts (%) |" in md


@pytest.mark.slow
def test_reproduce_smoke_tts(tmp_path):
    """The TTS table end to end: 2 tiny decoder cells trained by the sweep runner on one eSpeak
    voice, then experiments.tts_bench on the sweep (no judge under --smoke), re-rendered with the
    reproduce command."""
    name = "tts_decoder_cells"
    r = _smoke(name, tmp_path)
    assert "smoke check passed: 2 rows from 2 runs" in r.stdout
    rep = json.loads((tmp_path / "smoke" / "results" / f"{name}.json").read_text())
    assert [row["decoder_cell"] for row in rep["runs"]] == ["lstm", "gru"]
    assert rep["judge"] is None and rep["kind"] == "tts_bench"
    for row in rep["runs"]:
        final = json.loads(
            (
                tmp_path / "smoke" / name / os.path.basename(row["workdir"]) / "final.json"
            ).read_text()
        )
        assert row["steps"] == final["steps"] == 6 and row["num_params"] == final["num_params"]
        assert row["data_options"]["voice"] == "en-us+m2" and row["utterances_scored"] == 4
        assert 0 < row["tf_mel_l1"] < float("inf") and 0 < row["mcd_dtw_db"] < float("inf")
    md = (tmp_path / "smoke" / "results" / f"{name}.md").read_text().splitlines()
    command = f"python -m experiments.reproduce {name} --smoke --workdir={tmp_path}"
    assert md[4:7] == ["```", command, "```"]
    assert any(line.startswith("python -m experiments.tts_bench --sweep_dir=") for line in md)
    assert sum(line.startswith("| ") for line in md) == 3


@pytest.mark.slow
def test_reproduce_smoke_attention_decoders(tmp_path):
    """The attention decoder comparison end to end: a tiny joint CTC/attention run trained by the
    sweep runner, then experiments.attention_decoders on it; greedy is its own final evaluation."""
    name = "joint_decoders_phrases_lstm_seed0"
    r = _smoke(name, tmp_path)
    assert "smoke check passed: 3 rows from 1 runs" in r.stdout
    rep = json.loads((tmp_path / "smoke" / "results" / f"{name}.json").read_text())
    (run,) = rep["runs"]
    with open(os.path.join(run["workdir"], "final.json")) as f:
        final = json.load(f)
    assert final["objective"] == "las" and final["steps"] == 6
    rows = {row["decoder"]: row for row in rep["rows"]}
    assert rows["greedy"]["test_cer"]["values"] == pytest.approx([final["test_cer"]])
    assert rep["decoders"]["beam_ctc"] == {"beam": 2, "ctc_weight": 0.3, "length_bonus": 0.0}
    md = (tmp_path / "smoke" / "results" / f"{name}.md").read_text().splitlines()
    assert md[5] == f"python -m experiments.reproduce {name} --smoke --workdir={tmp_path}"
    assert any(
        line.startswith("python -m experiments.attention_decoders --workdirs=") for line in md
    )
    assert sum(line.startswith("| ") for line in md) == 4
