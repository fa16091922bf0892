"""rnnbench/report.py on hand-made sweep directories with known numbers."""

import csv
import io
import json
import os
import subprocess
import sys

import pytest

from rnnbench import grid as grid_lib
from rnnbench import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)


def make_run(
    sweep_dir,
    name,
    overrides,
    *,
    final=None,
    error=None,
    task="classify",
    curve=(0.5, 0.7),
    time_per_eval=10.0,
):
    """A run directory as rnnbench/train.py leaves it: config.json, metrics.jsonl, final.json
    (done) or error.txt (failed)."""
    d = os.path.join(sweep_dir, name)
    model = {
        "kind": {"ctc": "ctc", "intent": "intent"}.get(task, "classifier"),
        "cell": "lstm",
        "hidden": 128,
        "layers": 1,
        "bidirectional": False,
    }
    config = {"seed": 0, "dataset": "synth_commands", "model": model, "num_steps": 500}
    for k, v in overrides.items():
        node = config
        *parents, leaf = k.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    _write(os.path.join(d, "config.json"), config)
    metric = {"ctc": "cer", "intent": "meaning_accuracy"}.get(task, "accuracy")
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        for i, v in enumerate(curve):
            step = 250 * (i + 1)
            f.write(
                json.dumps(
                    {
                        "step": step,
                        "split": "train",
                        "time_s": time_per_eval * (i + 1),
                        "loss": 1.0,
                        "examples_per_s": 100.0,
                    }
                )
                + "\n"
            )
            f.write(
                json.dumps(
                    {
                        "step": step,
                        "split": "validation",
                        "time_s": time_per_eval * (i + 1),
                        "loss": 1.0,
                        metric: v,
                    }
                )
                + "\n"
            )
        f.write('{"step": 750, "split": "tra')  # a line cut short by a kill
    if final is not None:
        base = {
            "num_params": 1000,
            "steps": 500,
            "train_time_s": 20.0,
            "steps_per_s": 25.0,
            "wall_time_s": 30.0,
            "git_commit": "abcdef1234567890",
            "jax_version": "0.7.2",
            "flax_version": "0.12.0",
            "devices": ["TFRT_CPU_0"],
            "dataset": "synth_commands",
            "task": task,
        }
        _write(os.path.join(d, "final.json"), {**base, **final})
    if error is not None:
        with open(os.path.join(d, "error.txt"), "w") as f:
            f.write(f"Traceback (most recent call last):\n  ...\n{error}\n")
    return d


def kws_sweep(tmp_path, with_failures=True):
    """2 cells x 3 seeds; gru seed 2 failed and lstm seed 2 never started (when with_failures)."""
    sweep_dir = str(tmp_path / "kws_cells")
    accs = {"lstm": [0.90, 0.92, 0.94], "gru": [0.80, 0.84, 0.88]}
    params = {"lstm": 4000, "gru": 3000}
    runs = []
    for cell in ("lstm", "gru"):
        for seed in range(3):
            name = f"cell={cell},seed={seed}"
            ov = {"model.cell": cell, "seed": seed}
            state = "done"
            if with_failures and cell == "gru" and seed == 2:
                make_run(sweep_dir, name, ov, error="FloatingPointError: non-finite loss")
                state = "failed"
            elif with_failures and cell == "lstm" and seed == 2:
                state = "pending"  # no directory at all
            else:
                make_run(
                    sweep_dir,
                    name,
                    ov,
                    final={
                        "test_accuracy": accs[cell][seed],
                        "val_accuracy": accs[cell][seed] - 0.01,
                        "test_loss": 0.3,
                        "num_params": params[cell],
                        "train_time_s": 10.0 * (seed + 1),
                    },
                    curve=(0.5, accs[cell][seed]),
                )
            runs.append({"name": name, "overrides": ov, "state": state, "workdir": name})
    _write(
        os.path.join(sweep_dir, "sweep.json"),
        {
            "config": "experiments/configs/kws.py:lstm",
            "sweep": "cells",
            "command": "python -m experiments.sweep --config=experiments/configs/kws.py "
            "--sweep=cells --workdir=runs/kws_cells",
            "runs": runs,
        },
    )
    return sweep_dir


def _row(rep, cell):
    (row,) = [r for r in rep["rows"] if r["config"] == {"model.cell": cell}]
    return row


def _no_temp_files(d):
    leftovers = [f for f in os.listdir(d) if f.startswith(".tmp-") or f.endswith(".tmp")]
    assert not leftovers, leftovers


def test_full_sweep_mean_std_n(tmp_path):
    sweep_dir = kws_sweep(tmp_path, with_failures=False)
    out = str(tmp_path / "results" / "kws_cells")
    rep = report.make_report(sweep_dir, out, report_command="python -m experiments.report x")
    assert rep["task"] == "classify" and rep["primary_metric"] == "test_accuracy"
    assert rep["warnings"] == []
    saved = json.load(open(out + ".json"))
    lstm = _row(saved, "lstm")
    acc = lstm["metrics"]["test_accuracy"]
    assert acc["n"] == 3 and lstm["n"] == 3 and lstm["expected"] == 3
    assert acc["mean"] == pytest.approx(0.92)
    assert acc["std"] == pytest.approx(0.02)  # sample std of 0.90, 0.92, 0.94
    assert _row(saved, "gru")["metrics"]["test_accuracy"]["std"] == pytest.approx(0.04)
    assert lstm["num_params"]["mean"] == 4000
    assert lstm["train_time_s"]["mean"] == pytest.approx(20.0)

    md = open(out + ".md").read()
    assert (
        "| lstm | 3/3 | 92.00 ± 2.00 | 91.00 ± 2.00 | 0.30 ± 0.00 | 4,000 | 20 ± 10 | "
        "25.0 ± 0.0 |  |  |" in md
    )
    assert "| gru | 3/3 | 84.00 ± 4.00 |" in md
    assert "| cell | n | test acc (%) |" in md
    assert "python -m experiments.sweep --config=experiments/configs/kws.py" in md
    assert "python -m experiments.report x" in md
    assert "`abcdef123456` (4 runs)" not in md and "`abcdef123456` (6 runs)" in md
    assert "jax 0.7.2" in md and "cores" in md and "Warning" not in md

    rows = list(csv.DictReader(io.StringIO(open(out + ".csv").read())))
    assert [r["model.cell"] for r in rows] == ["lstm", "gru"]
    assert float(rows[0]["test_accuracy_mean"]) == pytest.approx(0.92)
    assert rows[0]["test_accuracy_n"] == "3"
    _no_temp_files(os.path.dirname(out))


def test_failed_and_missing_runs_are_named_not_averaged(tmp_path):
    sweep_dir = kws_sweep(tmp_path, with_failures=True)
    out = str(tmp_path / "out" / "kws_cells")
    rep = report.make_report(sweep_dir, out)
    gru, lstm = _row(rep, "gru"), _row(rep, "lstm")
    assert (gru["n"], gru["expected"]) == (2, 3)
    assert gru["metrics"]["test_accuracy"]["mean"] == pytest.approx(0.82)
    assert [f["run"] for f in gru["failed"]] == ["cell=gru,seed=2"]
    assert "FloatingPointError" in gru["failed"][0]["error"]
    assert (lstm["n"], lstm["expected"]) == (2, 3)
    assert lstm["metrics"]["test_accuracy"]["mean"] == pytest.approx(0.91)
    assert [m["run"] for m in lstm["missing"]] == ["cell=lstm,seed=2"]
    assert len(rep["warnings"]) == 1 and "2 of 6 runs have no results" in rep["warnings"][0]

    md = open(out + ".md").read()
    assert "> **Warning:** 2 of 6 runs" in md
    assert "| gru | 2/3 | 82.00 ± 2.83 |" in md and md.count("seed=2: FloatingPointError |") == 1
    lstm_line = next(l for l in md.splitlines() if l.startswith("| lstm |"))
    assert lstm_line.startswith("| lstm | 2/3 | 91.00 ± 1.41 |")
    assert lstm_line.endswith("|  | seed=2 (pending) |")
    rows = list(csv.DictReader(open(out + ".csv")))
    assert rows[1]["failed"] == "cell=gru,seed=2" and rows[0]["missing"] == "cell=lstm,seed=2"


def test_ctc_metrics(tmp_path):
    sweep_dir = str(tmp_path / "ctc")
    runs = []
    for seed, (cer, wer) in enumerate([(0.10, 0.30), (0.20, 0.50)]):
        name = f"cell=gru,seed={seed}"
        ov = {"model.cell": "gru", "seed": seed}
        make_run(
            sweep_dir,
            name,
            ov,
            task="ctc",
            curve=(0.6, cer),
            final={
                "test_cer": cer,
                "test_wer": wer,
                "val_cer": cer,
                "val_wer": wer,
                "test_loss": 1.5,
            },
        )
        runs.append({"name": name, "overrides": ov, "state": "done", "workdir": name})
    _write(
        os.path.join(sweep_dir, "sweep.json"),
        {"config": "experiments/configs/ctc.py", "sweep": "cells", "runs": runs},
    )
    out = str(tmp_path / "ctc_cells")
    rep = report.make_report(sweep_dir, out)
    assert rep["task"] == "ctc" and rep["primary_metric"] == "test_cer"
    row = rep["rows"][0]
    assert row["metrics"]["test_cer"]["mean"] == pytest.approx(0.15)
    assert row["metrics"]["test_wer"]["mean"] == pytest.approx(0.40)
    assert row["metrics"]["test_wer"]["std"] == pytest.approx(0.1414213, rel=1e-5)
    md = open(out + ".md").read()
    assert "| cell | n | test CER (%) | test WER (%) |" in md
    assert "| gru | 2/2 | 15.00 ± 7.07 | 40.00 ± 14.14 |" in md
    with pytest.raises(ValueError, match="keyword-spotting"):
        report.make_report(sweep_dir, out, reference="hello_edge")


def test_intent_runs_get_meaning_columns_by_their_objective(tmp_path):
    """An SLU sweep's table ranks by exact-meaning accuracy, chosen by final.json's objective,
    and LAS / transducer runs are tabulated with the recognition columns."""
    sweep_dir = str(tmp_path / "slu")
    runs = []
    for seed, (meaning, intent) in enumerate([(0.90, 0.98), (0.94, 1.0)]):
        name = f"cell=gru,seed={seed}"
        ov = {"model.cell": "gru", "seed": seed}
        final = {
            "objective": "intent",
            "task": "phrases",
            "test_meaning_accuracy": meaning,
            "test_intent_accuracy": intent,
            "test_slot_accuracy": 0.97,
            "val_meaning_accuracy": meaning,
            "test_loss": 0.3,
        }
        make_run(sweep_dir, name, ov, task="intent", curve=(0.5, meaning), final=final)
        runs.append({"name": name, "overrides": ov, "state": "done", "workdir": name})
    _write(
        os.path.join(sweep_dir, "sweep.json"),
        {"config": "experiments/configs/slu.py", "sweep": "direct", "runs": runs},
    )
    out = str(tmp_path / "slu_direct")
    rep = report.make_report(sweep_dir, out)
    assert rep["task"] == "intent" and rep["primary_metric"] == "test_meaning_accuracy"
    assert rep["rows"][0]["metrics"]["test_meaning_accuracy"]["mean"] == pytest.approx(0.92)
    md = open(out + ".md").read()
    assert "| cell | n | test exact meaning (%) | test intent (%) | test slots (%) |" in md
    assert "| gru | 2/2 | 92.00 ± 2.83 | 99.00 ± 1.41 | 97.00 ± 0.00 |" in md
    for objective in ("las", "transducer"):
        r = grid_lib.Run(name="x", overrides={}, workdir="x", state="done")
        r.final = {"objective": objective, "test_cer": 0.1}
        assert report.detect_task([r]) == "ctc"


def test_hello_edge_reference(tmp_path):
    sweep_dir = kws_sweep(tmp_path, with_failures=False)
    out = str(tmp_path / "kws_cells")
    rep = report.make_report(sweep_dir, out, reference="hello_edge")
    assert _row(rep, "lstm")["reference"] == {"name": "LSTM", "test_accuracy_pct": 92.9}
    assert _row(rep, "gru")["reference"] == {"name": "GRU", "test_accuracy_pct": 93.5}
    md = open(out + ".md").read()
    assert "| Hello Edge (%) |" in md and "| 92.9 (LSTM) |" in md and "| 93.5 (GRU) |" in md
    assert "Basic LSTM 92.0" in md and "CRNN 94.0" in md
    assert "not a comparison" in md and "synthetic eSpeak" in md


def test_plots_are_valid_pngs(tmp_path):
    sweep_dir = kws_sweep(tmp_path, with_failures=True)
    out = str(tmp_path / "plots" / "kws_cells")
    rep = report.make_report(sweep_dir, out)
    for key in ("curves", "params"):
        path = rep["files"][key]
        data = open(path, "rb").read()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, (path, len(data))
    c = report.curves(report.load_sweep(sweep_dir), rep)
    lstm = c[0]
    assert lstm["step"] == [250, 500] and lstm["time_s"] == [10.0, 20.0]
    assert lstm["mean"][1] == pytest.approx(91.0) and lstm["min"][1] == pytest.approx(90.0)
    assert lstm["max"][1] == pytest.approx(92.0)
    _no_temp_files(os.path.dirname(out))


def test_discovers_runs_without_sweep_json(tmp_path):
    sweep_dir = kws_sweep(tmp_path, with_failures=False)
    os.unlink(os.path.join(sweep_dir, "sweep.json"))
    rep = report.make_report(sweep_dir, str(tmp_path / "r"))
    assert rep["override_keys"] == ["model.cell"]  # seed varies too, but is not a column
    assert sorted(r["label"] for r in rep["rows"]) == ["cell=gru", "cell=lstm"]
    assert all(r["n"] == 3 for r in rep["rows"])
    # a seed the other configuration has is named as missing
    import shutil

    shutil.rmtree(os.path.join(sweep_dir, "cell=gru,seed=1"))
    rep = report.make_report(sweep_dir, str(tmp_path / "r"))
    gru = _row(rep, "gru")
    assert (gru["n"], gru["expected"]) == (2, 3)
    assert [(m["tag"], m["run"]) for m in gru["missing"]] == [("seed=1", "cell=gru,seed=1")]


def test_empty_or_missing_dir_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(report.ReportError, match="no sweep.json and no run directories"):
        report.make_report(str(empty), str(tmp_path / "x"))
    with pytest.raises(report.ReportError, match="does not exist"):
        report.make_report(str(tmp_path / "nope"), str(tmp_path / "x"))
    _write(str(empty / "sweep.json"), {"config": "c", "sweep": "s", "runs": []})
    with pytest.raises(report.ReportError, match="lists no runs"):
        report.make_report(str(empty), str(tmp_path / "x"))
    assert not any(p.name.startswith("x") for p in tmp_path.iterdir())


def test_cli_half_finished_and_empty(tmp_path):
    sweep_dir = kws_sweep(tmp_path, with_failures=True)
    out = str(tmp_path / "cli" / "kws_cells")
    cmd = [
        sys.executable,
        "-m",
        "experiments.report",
        f"--sweep_dir={sweep_dir}",
        f"--out={out}",
        "--reference=hello_edge",
    ]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "warning: 2 of 6 runs have no results" in r.stderr
    md = open(out + ".md").read()
    assert (
        f"python -m experiments.report --sweep_dir={sweep_dir} --out={out} "
        "--reference=hello_edge" in md
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.report",
            f"--sweep_dir={empty}",
            f"--out={tmp_path / 'e'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and f"error: '{empty}' holds no sweep.json" in r.stderr
    assert "expected a sweep directory" in r.stderr


# ----------------------------------------------------------------------------- reproduce


def fake_sweep_runner(fail_one=False, calls=None, task="classify"):
    """Stands in for `python -m experiments.sweep`: loads --config's sweeps() as the runner does
    and leaves its runs finished (with fail_one, the last one failed) in --workdir."""
    from rnnbench import sweep as sweep_lib

    def run(cmd):
        assert cmd[1:3] == ["-m", "experiments.sweep"]
        flags = {}
        for a in cmd[3:]:
            k, v = a[2:].split("=", 1)
            flags.setdefault(k, []).append(v)
        if calls is not None:
            calls.append(flags)
        _, _, module, _ = sweep_lib.load_config_module(flags["config"][0])
        grid = module.sweeps()[flags["sweep"][0]]
        sweep_dir = flags["workdir"][0]
        runs = []
        for i, (name, ov) in enumerate(zip(sweep_lib.run_names(grid), grid)):
            if fail_one and i == len(grid) - 1:
                make_run(sweep_dir, name, ov, error="ValueError: boom")
                state = "failed"
            elif task == "ctc":
                make_run(
                    sweep_dir,
                    name,
                    ov,
                    task="ctc",
                    final={
                        "test_cer": 0.1 + 0.1 * ov["seed"],
                        "test_wer": 0.3,
                        "val_cer": 0.1,
                        "val_wer": 0.3,
                        "test_loss": 1.0,
                    },
                )
                state = "done"
            else:
                make_run(
                    sweep_dir,
                    name,
                    ov,
                    final={
                        "test_accuracy": 0.5 + 0.1 * ov["seed"],
                        "val_accuracy": 0.5,
                        "test_loss": 1.0,
                    },
                )
                state = "done"
            runs.append({"name": name, "overrides": ov, "state": state, "workdir": name})
        _write(
            os.path.join(sweep_dir, "sweep.json"),
            {
                "config": flags["config"][0],
                "sweep": flags["sweep"][0],
                "runs": runs,
                "identity": {"common_overrides": dict(o.split("=", 1) for o in flags["override"])},
            },
        )
        return 1 if fail_one else 0

    return run


def test_reproduce_smoke_checks_the_table(tmp_path, capsys):
    from experiments import reproduce

    calls = []
    workdir = str(tmp_path / "runs")
    rc = reproduce.reproduce(
        "kws_cells",
        smoke=True,
        workdir=workdir,
        parallel=2,
        sweep_runner=fake_sweep_runner(calls=calls),
    )
    assert rc == 0, capsys.readouterr().err
    (flags,) = calls
    # the generated config file with the entry's variant (experiments/configs/kws.py:lstm)
    assert flags["config"] == [os.path.join(workdir, "smoke", "kws_cells_config.py") + ":lstm"]
    assert flags["sweep"] == ["cells"] and flags["wandb"] == ["disabled"]
    assert flags["workdir"] == [os.path.join(workdir, "smoke", "kws_cells")]
    assert flags["parallel"] == ["2"]
    assert "num_steps=6" in flags["override"] and "data.options.train_size=48" in flags["override"]
    assert "model.hidden=8" not in flags["override"]  # the cells grid sets model.hidden itself
    out = os.path.join(workdir, "smoke", "results", "kws_cells")
    md = open(out + ".md").read()
    assert "python -m experiments.reproduce kws_cells --smoke" in md and "| 2/2 |" in md
    assert "smoke check passed: 2 rows" in capsys.readouterr().out
    rep = json.load(open(out + ".json"))
    assert [r["label"] for r in rep["rows"]] == [
        "cell=rnn, hidden=64, layers=1",
        "cell=rnn, hidden=64, layers=2",
    ]
    assert "--override=num_steps=6" in md  # the sweep command, rebuilt from sweep.json

    # a failed run makes the smoke check (and the command) fail, naming the run
    rc = reproduce.reproduce(
        "kws_cells", smoke=True, workdir=workdir, sweep_runner=fake_sweep_runner(fail_one=True)
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "smoke check failed: row cell=rnn, hidden=64, layers=2: n=1/2" in err
    assert "cell=rnn,hidden=64,layers=2,seed=1" in err
    assert (
        not os.path.exists(os.path.join(ROOT, "results", "kws_cells.md"))
        or "--smoke" not in open(os.path.join(ROOT, "results", "kws_cells.md")).read()
    )


def test_reproduce_table_and_bad_names(tmp_path, capsys, monkeypatch):
    from experiments import reproduce

    assert set(reproduce.SWEEPS) == {
        "kws_cells",
        "kws_fsdd",
        "kws_fsdd_cells",
        "kws_attention",
        "kws_regularisers",
        "kws_depth",
        "ctc_cells",
        "ctc_fsdd_cells",
        "ctc_decoders",
        "ctc_decoders_seed0",
        "ctc_decoders_fsdd",
        "asr_families_phrases",
        "asr_families_phrases_seed0",
        "asr_families_phrases_lstm_seed0",
        "asr_families_fsdd",
        "asr_families_fsdd_lstm",
        "asr_families_fsdd_lstm_seed0",
        "asr_families_fsdd_gru",
        "asr_families_fsdd_mingru",
        "joint_decoders_fsdd_gru",
        "joint_decoders_fsdd_lstm",
        "joint_decoders_phrases_lstm_seed0",
        "slu_direct_gru_seed0",
        "slu_pipeline_gru_seed0",
        "tts_decoder_cells",
        "tts_gru_reductions",
        "tts_gru_4000",
        "tts_gru_prenet_dropout",
        "tts_gru_scheduled_sampling",
        "slu_best_direct_gru_seeds12",
        "slu_best_direct_gru_20k",
        "slu_best_direct_cells_seed0",
        "slu_best_direct_gru_phrasings_20k",
        "slu_pipeline_gru_20k_seed0",
    }
    for entry in reproduce.SWEEPS.values():
        assert os.path.exists(os.path.join(ROOT, entry.config.split(":")[0])), entry
    assert reproduce.reproduce("nope", workdir=str(tmp_path)) == 2
    assert "unknown sweep 'nope'" in capsys.readouterr().err
    monkeypatch.delenv("RNNBENCH_FSDD_DIR", raising=False)
    assert (
        reproduce.reproduce(
            "kws_fsdd_cells", workdir=str(tmp_path), sweep_runner=fake_sweep_runner()
        )
        == 2
    )
    assert "RNNBENCH_FSDD_DIR" in capsys.readouterr().err
    sweep_cmd, report_cmd = reproduce.commands("ctc_cells")
    assert sweep_cmd[1:] == [
        "-m",
        "experiments.sweep",
        "--config=experiments/configs/ctc.py",
        "--sweep=cells",
        "--workdir=runs/ctc_cells",
        "--parallel=2",
        "--vmap_seeds=true",
        "--override=checkpoint_every=250",
        "--override=eval_every=250",
        "--override=num_steps=1000",
    ]
    assert report_cmd == [
        "python",
        "-m",
        "experiments.report",
        "--sweep_dir=runs/ctc_cells",
        "--out=results/ctc_cells",
    ]
    assert "--parallel=1" in reproduce.commands("ctc_cells", parallel=1)[0]
    # every named sweep exists in its config file; the smoke subset is seeds 0,1 of 2 configs
    # (the decoder comparisons train one configuration: seeds 0,1 of it)
    monkeypatch.setenv("RNNBENCH_FSDD_DIR", str(tmp_path))  # the FSDD configs read it
    for name, entry in reproduce.SWEEPS.items():
        grid = reproduce.smoke_grid(reproduce.load_grid(entry))
        if entry.table == "tts":  # the first two values of the swept field, the config's seed
            firsts = [list(d.values())[0] for d in grid]
            assert firsts in (["lstm", "gru"], [3, 5], ["gru"], [0.25, 0.5]), name
            continue
        if entry.sweep.endswith("seeds12"):  # one configuration at seeds 1 and 2: smoke keeps 1
            assert [d["seed"] for d in grid] == [1], name
            continue
        if entry.sweep.endswith("3seeds"):  # one configuration at seeds 0-2: smoke keeps 0, 1
            assert [d["seed"] for d in grid] == [0, 1], name
            continue
        if len(reproduce.load_grid(entry)) == 1:  # one run: smoke keeps it
            assert [d["seed"] for d in grid] == [0], name
            continue
        seeds = {0} if entry.sweep.endswith("seed0") else {0, 1}
        assert len(grid) == len(seeds) * (1 if entry.table in reproduce.DECODER_TABLES else 2), name
        assert {d["seed"] for d in grid} == seeds, name
    # the TTS table is judged by a recogniser of another entry's sweep, which must exist first
    *_, tts_cmd = reproduce.commands("tts_decoder_cells", workdir=str(tmp_path))
    judge = os.path.join(
        str(tmp_path), "slu_pipeline_gru_seed0", "kind=ctc,cell=gru,split=voices,seed=0"
    )
    assert tts_cmd[:3] == ["python", "-m", "experiments.tts_bench"]
    assert f"--asr_workdir={judge}" in tts_cmd
    assert f"--sweep_dir={tmp_path / 'tts_decoder_cells'}" in tts_cmd
    ran = []
    rc = reproduce.reproduce(
        "tts_decoder_cells", workdir=str(tmp_path), sweep_runner=ran.append, step_runner=ran.append
    )
    assert rc == 2 and ran == []
    err = capsys.readouterr().err
    assert f"judged by the recogniser {judge}, which has not finished" in err
    assert "python -m experiments.reproduce slu_pipeline_gru_seed0" in err
    families = reproduce.load_grid(reproduce.SWEEPS["asr_families_phrases"])
    assert len(families) == 36 and {d["model.cell"] for d in families} == {"lstm", "gru", "mingru"}
    seed0 = reproduce.load_grid(reproduce.SWEEPS["asr_families_phrases_seed0"])
    assert seed0 == [d for d in families if d["seed"] == 0] and len(seed0) == 12
    lstm = reproduce.load_grid(reproduce.SWEEPS["asr_families_phrases_lstm_seed0"])
    assert lstm == [d for d in seed0 if d["model.cell"] == "lstm"] and len(lstm) == 4
    assert {(d["model.kind"], d["model.ctc_weight"]) for d in families} == {
        ("ctc", 1.0),
        ("las", 0.0),
        ("las", 0.3),
        ("transducer", 0.0),
    }


def test_smoke_grid_keeps_first_configurations_and_seeds():
    from experiments import reproduce

    grid = [{"c": c, "seed": s} for c in "abc" for s in (0, 1, 2)] + [{"c": "d"}]
    assert reproduce.smoke_grid(grid) == [
        {"c": "a", "seed": 0},
        {"c": "a", "seed": 1},
        {"c": "b", "seed": 0},
        {"c": "b", "seed": 1},
    ]
    assert reproduce.smoke_grid([{"c": "d"}, {"c": "e"}, {"c": "f"}]) == [{"c": "d"}, {"c": "e"}]


def test_workdirs_named_relative_to_the_launch_directory(tmp_path):
    """The sweep runner records workdirs as it was given them (e.g. runs/kws_cells/<name>,
    relative to where it was launched); the report still finds every run in the sweep dir."""
    sweep_dir = kws_sweep(tmp_path, with_failures=False)
    spec = json.load(open(os.path.join(sweep_dir, "sweep.json")))
    for run in spec["runs"]:
        run["workdir"] = os.path.join("runs", "kws_cells", run["name"])
    _write(os.path.join(sweep_dir, "sweep.json"), spec)
    rep = report.make_report(sweep_dir, str(tmp_path / "out" / "kws_cells"))
    assert rep["warnings"] == []
    assert _row(rep, "lstm")["n"] == 3 and _row(rep, "gru")["n"] == 3


# ----------------------------------------------------------------------------- committed tables


def _committed(name):
    with open(os.path.join(ROOT, "results", name + ".json")) as f:
        return json.load(f)


def _table_lines(path):
    with open(path) as f:
        return [line for line in f.read().splitlines() if line.startswith("| ")]


def _entry_steps(entry) -> int:
    """The steps an entry's runs train: its num_steps override, else its config's."""
    from rnnbench import sweep as sweep_lib

    given = dict(o.split("=", 1) for o in entry.overrides)
    if "num_steps" in given:
        return int(given["num_steps"])
    return int(sweep_lib.load_config_module(entry.config)[3].num_steps)


def test_reproduce_entries_carry_what_their_tables_used():
    """Each entry's overrides and runner settings are what its committed table's JSON records:
    the sweep's --override values, and one vmapped program per configuration exactly when the
    entry vmaps seeds (the runs' final.json say models_in_program)."""
    from experiments import reproduce

    committed = [
        n for n in reproduce.SWEEPS if os.path.exists(os.path.join(ROOT, "results", n + ".json"))
    ]
    assert {
        "kws_cells",
        "kws_fsdd",
        "kws_fsdd_cells",
        "kws_attention",
        "kws_regularisers",
        "kws_depth",
        "ctc_cells",
        "ctc_fsdd_cells",
    } <= set(committed)
    for name in committed:
        entry = reproduce.SWEEPS[name]
        rep = _committed(name)
        if entry.table == "tts":  # experiments.tts_bench on the sweep's finished runs
            assert {r["steps"] for r in rep["runs"]} == {_entry_steps(entry)}, name
            names = grid_lib.run_names(reproduce.load_grid(entry))
            per_run = 1  # a row per run, per --steps checkpoint, per --prenet_dropout setting
            for arg in entry.table_args:
                if arg.startswith(("--steps=", "--prenet_dropout=")):
                    per_run *= len(arg.split("=", 1)[1].split(","))
            assert [r["workdir"] for r in rep["runs"]] == [
                os.path.join("runs", name, n) for n in names for _ in range(per_run)
            ], name
            assert rep["commands"] == [reproduce.display(c) for c in reproduce.commands(name)]
            continue
        if entry.table in reproduce.DECODER_TABLES:  # experiments.(attention_)decoders on the
            # sweep's runs, as listed
            assert {p["steps"] for p in rep["run_provenance"]} == {_entry_steps(entry)}, name
            assert {p["models_in_program"] for p in rep["run_provenance"]} == (
                {3} if entry.vmap_seeds else {1}
            ), name
            names = grid_lib.run_names(reproduce.load_grid(entry))
            assert [r["workdir"] for r in rep["runs"]] == [
                os.path.join("runs", name, n) for n in names
            ], name
            assert rep["commands"][-1] == reproduce.display(reproduce.commands(name)[-1]), name
            continue
        programs = set(rep["run_models_in_program"])
        assert programs == ({"3"} if entry.vmap_seeds else {"1"}), name
        spec = rep["sweep"]
        if name == "kws_fsdd":  # made by experiments.train, before the sweep runner
            assert spec == {} and entry.overrides == ()
            continue
        assert spec["config"] == entry.config and spec["sweep"] == entry.sweep, name
        common = spec["identity"]["common_overrides"]
        assert [f"{k}={v}" for k, v in common.items()] == list(entry.overrides), name
        assert rep["reference"] == entry.reference, name
        steps = {s for row in rep["rows"] for s in row["steps"]}
        assert steps == {_entry_steps(entry)}, name


def test_dry_run_prints_the_exact_commands(capsys):
    from experiments import reproduce

    assert reproduce.dry_run("kws_cells") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(
        "# python -m experiments.reproduce kws_cells: experiments/configs/"
        "kws.py:lstm sweep 'cells', 54 runs, seeds vmapped."
    )
    sweep_cmd = (
        "python -m experiments.sweep --config=experiments/configs/kws.py:lstm "
        "--sweep=cells --workdir=runs/kws_cells --parallel=2 --vmap_seeds=true "
        "--override=checkpoint_every=200 --override=eval_every=200 "
        "--override=num_steps=600"
    )
    report_cmd = (
        "python -m experiments.report --sweep_dir=runs/kws_cells "
        "--out=results/kws_cells --reference=hello_edge"
    )
    assert out[1:] == [sweep_cmd, report_cmd]
    assert reproduce.dry_run("nope") == 2


@pytest.mark.parametrize(
    "name,how",
    [
        ("kws_cells", "seeds vmapped: each configuration's seeds trained as one program of 3"),
        ("kws_depth", "every run trained in its own process (seeds not vmapped)"),
    ],
)
def test_render_only_rewrites_the_header_and_no_number(tmp_path, name, how):
    """A committed table re-rendered from its JSON alone: the table body and the CSV are the
    committed ones to the character; the header starts with the reproduce command and says how
    the runner ran."""
    import shutil

    from experiments import reproduce

    shutil.copy(os.path.join(ROOT, "results", name + ".json"), tmp_path)
    assert reproduce.render_only(name, out_dir=str(tmp_path)) == 0
    md = (tmp_path / f"{name}.md").read_text()
    assert _table_lines(tmp_path / f"{name}.md") == _table_lines(
        os.path.join(ROOT, "results", name + ".md")
    )
    with open(os.path.join(ROOT, "results", name + ".csv")) as f:
        assert (tmp_path / f"{name}.csv").read_text() == f.read()
    lines = md.splitlines()
    assert lines[2] == "Generated by `rnnbench/report.py`; do not edit by hand. Reproduce with:"
    assert lines[3:7] == ["", "```", f"python -m experiments.reproduce {name}", "```"]
    entry = reproduce.SWEEPS[name]
    runner = next(line for line in lines if line.startswith("- runner: "))
    assert runner.startswith(
        f"- runner: local backend, --parallel={entry.parallel}, "
        f"--vmap_seeds={str(entry.vmap_seeds).lower()} (from the reproduce "
        "entry"
    )
    assert how in runner
    saved = json.loads((tmp_path / f"{name}.json").read_text())
    assert saved["rows"] == _committed(name)["rows"]
    committed = _committed(name)  # a JSON from before rnnbench/provenance.py, or re-rendered
    made_at = (committed.get("provenance") or {}).get("git_commit") or committed["environment"][
        "git_head"
    ]
    assert saved["provenance"]["git_commit"] == made_at  # the report's commit, not today's
    assert saved["runner"]["source"] == "reproduce entry"
    # again from the re-rendered JSON: the same files (but the re-render date)
    before = (tmp_path / f"{name}.csv").read_text()
    assert reproduce.render_only(name, out_dir=str(tmp_path)) == 0
    assert (tmp_path / f"{name}.csv").read_text() == before
    assert _table_lines(tmp_path / f"{name}.md") == _table_lines(
        os.path.join(ROOT, "results", name + ".md")
    )


def test_rerender_refuses_what_is_not_a_report(tmp_path):
    with pytest.raises(report.ReportError, match="expected a report's .json file"):
        report.rerender(str(tmp_path / "kws_cells.md"))
    with pytest.raises(report.ReportError, match="cannot read"):
        report.rerender(str(tmp_path / "nope.json"))
    _write(str(tmp_path / "x.json"), {"rows": []})
    with pytest.raises(report.ReportError, match="lacks task, override_keys"):
        report.rerender(str(tmp_path / "x.json"))


def test_header_says_how_the_runner_ran_and_reads_run_provenance(tmp_path):
    """sweep.json's runner record wins over a reproduce entry's; a run's final.json provenance
    record (rnnbench/provenance.py) gives its commit, versions and devices."""
    sweep_dir = kws_sweep(tmp_path, with_failures=False)
    with open(os.path.join(sweep_dir, "sweep.json")) as f:
        spec = json.load(f)
    spec["runner"] = {"backend": "local", "parallel": 3, "vmap_seeds": False}
    del spec["command"]  # then the header rebuilds the sweep command from sweep.json
    _write(os.path.join(sweep_dir, "sweep.json"), spec)
    run = os.path.join(sweep_dir, "cell=gru,seed=0", "final.json")
    with open(run) as f:
        final = json.load(f)
    final["provenance"] = {
        "git_commit": "0123456789abcdef",
        "git_dirty": True,
        "versions": {"jax": "9.9.9", "flax": "8.8.8"},
        "accelerator": "NVIDIA H200",
        "device_count": 1,
    }
    _write(run, final)
    rep = report.make_report(sweep_dir, str(tmp_path / "out"), runner={"parallel": 9})
    assert rep["runner"]["parallel"] == 3 and rep["runner"]["source"] == "sweep.json"
    md = (tmp_path / "out.md").read_text()
    assert (
        "- runner: local backend, --parallel=3, --vmap_seeds=false; every run trained in "
        "its own process (seeds not vmapped)" in md
    )
    assert "`0123456789ab` (1 runs)" in md and "(1 with uncommitted changes)" in md
    assert "jax 0.7.2, jax 9.9.9" in md and "1x NVIDIA H200" in md
    assert "--parallel=3 --vmap_seeds=false" in md  # the sweep command rebuilt from sweep.json
    assert rep["provenance"]["cores"] == os.cpu_count()


# ----------------------------------------------------------------------------- recognition


def test_decode_speed_column_only_where_measured(tmp_path):
    """decode_speed.json in the runs' workdirs (experiments.decoders --speed_only) gives a
    `decode utt/s` column, mean ± std over seeds; without it the table is as before."""
    sweep_dir = str(tmp_path / "asr")
    runs = []
    for seed, (cer, speed) in enumerate([(0.10, 20.0), (0.20, 30.0)]):
        name = f"cell=gru,seed={seed}"
        ov = {"model.cell": "gru", "seed": seed}
        d = make_run(
            sweep_dir,
            name,
            ov,
            task="ctc",
            final={
                "test_cer": cer,
                "test_wer": 0.5,
                "val_cer": cer,
                "val_wer": 0.5,
                "test_loss": 1.5,
            },
        )
        _write(os.path.join(d, report.DECODE_SPEED_FILE), {"utterances_per_s": speed})
        runs.append({"name": name, "overrides": ov, "state": "done", "workdir": name})
    _write(
        os.path.join(sweep_dir, "sweep.json"),
        {"config": "experiments/configs/asr.py", "sweep": "families", "runs": runs},
    )
    rep = report.make_report(sweep_dir, str(tmp_path / "with"))
    assert rep["rows"][0]["decode_utt_per_s"]["mean"] == pytest.approx(25.0)
    md = (tmp_path / "with.md").read_text()
    assert "| params | train time (s) | steps/s | decode utt/s | failed | missing |" in md
    assert "| 1,000 | 20 ± 0 | 25.0 ± 0.0 | 25.0 ± 7.1 |  |  |" in md
    assert "Decode utt/s: test utterances per second" in md
    row = next(csv.DictReader(io.StringIO((tmp_path / "with.csv").read_text())))
    assert float(row["decode_utt_per_s_mean"]) == pytest.approx(25.0)
    for r in runs:
        os.unlink(os.path.join(sweep_dir, r["name"], report.DECODE_SPEED_FILE))
    report.make_report(sweep_dir, str(tmp_path / "without"))
    md = (tmp_path / "without.md").read_text()
    assert "decode utt/s" not in md and "| steps/s | failed | missing |" in md
    assert "decode_utt_per_s" not in (tmp_path / "without.csv").read_text()


def test_reproduce_families_times_decoding_before_the_report(tmp_path, capsys):
    from experiments import reproduce

    steps = []

    def fake_step(cmd):  # stands in for `python -m experiments.decoders --speed_only`
        steps.append(cmd)
        sweep_dir = cmd[3].split("=", 1)[1]
        for i, name in enumerate(sorted(os.listdir(sweep_dir))):
            if os.path.exists(os.path.join(sweep_dir, name, "final.json")):
                _write(
                    os.path.join(sweep_dir, name, report.DECODE_SPEED_FILE),
                    {"utterances_per_s": 10.0 * (i + 1)},
                )
        return 0

    workdir = str(tmp_path / "runs")
    rc = reproduce.reproduce(
        "asr_families_phrases",
        smoke=True,
        workdir=workdir,
        sweep_runner=fake_sweep_runner(task="ctc"),
        step_runner=fake_step,
    )
    assert rc == 0, capsys.readouterr().err
    sweep_dir = os.path.join(workdir, "smoke", "asr_families_phrases")
    assert steps == [
        ["python", "-m", "experiments.decoders", f"--sweep_dir={sweep_dir}", "--speed_only"]
    ]
    out = os.path.join(workdir, "smoke", "results", "asr_families_phrases")
    with open(out + ".md") as f:
        md = f.read()
    assert f"python -m experiments.decoders --sweep_dir={sweep_dir} --speed_only" in md
    # runs sorted: ctc_weight=1.0,...,cell=gru,seed=0 / seed=1, then cell=lstm seed=0 / seed=1
    assert "| ctc | 1.0 | 0 | lstm | 2/2 |" in md and "| 35.0 ± 7.1 |" in md
    assert "| ctc | 1.0 | 0 | gru | 2/2 |" in md and "| 15.0 ± 7.1 |" in md


def test_decoder_comparison_entries_name_their_runs(capsys):
    from experiments import reproduce

    sweep_cmd, decoders_cmd = reproduce.commands("ctc_decoders")
    assert sweep_cmd[3:5] == [
        "--config=experiments/configs/asr.py:ctc_bilstm_digits",
        "--sweep=decoders",
    ]
    assert decoders_cmd[:5] == [
        "python",
        "-m",
        "experiments.decoders",
        "--workdirs=runs/ctc_decoders/seed=0,runs/ctc_decoders/seed=1,runs/ctc_decoders/seed=2",
        "--out=results/ctc_decoders",
    ]
    assert reproduce.dry_run("ctc_decoders_seed0") == 0
    out = capsys.readouterr().out.splitlines()
    assert "1 runs, one process per run; the table: experiments.decoders" in out[0]
    assert out[2].startswith(
        "python -m experiments.decoders "
        "--workdirs=runs/ctc_decoders_seed0/seed=0 "
        "--out=results/ctc_decoders_seed0 --beam=10"
    )


def test_program_entries_run_their_own_program(capsys, monkeypatch):
    """`reproduce transfer` runs experiments.transfer with the entry's workdir and out; its
    --dry_run prints that command, --render_only passes on, and a missing data variable or
    --smoke is refused before anything runs."""
    from experiments import reproduce, transfer

    assert "transfer" in reproduce.PROGRAMS and "transfer" not in reproduce.SWEEPS
    assert reproduce.dry_run("transfer") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "python -m experiments.transfer --workdir=runs/transfer --out=results/transfer"
    ran = []
    monkeypatch.setattr(reproduce, "run_step", lambda cmd: ran.append(cmd) or 0)
    assert reproduce.render_only("transfer") == 0
    assert ran[-1] == [
        "python",
        "-m",
        "experiments.transfer",
        "--out=results/transfer",
        "--render_only",
    ]
    monkeypatch.delenv("RNNBENCH_FSDD_DIR", raising=False)
    assert reproduce.reproduce("transfer", step_runner=ran.append) == 2
    assert "RNNBENCH_FSDD_DIR" in capsys.readouterr().err
    monkeypatch.setenv("RNNBENCH_FSDD_DIR", "/data/fsdd")
    assert reproduce.reproduce("transfer", smoke=True) == 2
    assert "has no --smoke" in capsys.readouterr().err
    ran.clear()
    reproduce.reproduce("transfer", workdir="w", step_runner=lambda c: ran.append(c) or 0)
    assert ran == [reproduce.program_command("transfer", workdir="w")]
    # the committed table made with every default flag names the reproduce entry first
    with open(os.path.join(ROOT, "results", "transfer.json")) as f:
        committed = json.load(f)
    assert committed["command"] == transfer.DEFAULT_COMMAND
    md = transfer.render(committed)
    assert md.index(transfer.REPRODUCE) < md.index(transfer.DEFAULT_COMMAND + "\n")
