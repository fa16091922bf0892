"""Long-range suite: configs, flag validation, the gradient-flow diagnostic, the smoke run."""

import json
import os

import numpy as np
import pytest

from experiments import longrange
from experiments.configs import longrange as lr_config
from rnnbench import provenance

# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "variant,dataset,kind",
    [
        ("adding", "task:adding", "classifier"),
        ("copy_gru", "task:copy", "tagger"),
        ("selective_rnn", "task:selective", "tagger"),
        ("recall_lstm_attn", "synth_recall", "classifier"),
    ],
)
def test_get_config(variant, dataset, kind):
    from rnnbench import train

    c = lr_config.get_config(variant)
    assert c.dataset == dataset and c.model.kind == kind
    train.check_config(c)
    if variant == "recall_lstm_attn":
        assert c.model.pooling == "attention" and c.data.options.delay_s == 1.0


def test_sweeps_apply_to_their_config():
    from rnnbench import sweep

    grids = lr_config.sweeps()
    assert {"adding", "copy", "selective", "recall"} <= set(grids)
    for name, grid in grids.items():
        c = lr_config.get_config(name.split("_")[0])
        for overrides in grid:
            sweep.check_overrides(c, overrides, name)
    recall = grids["recall"]
    assert any(o.get("model.pooling") == "attention" for o in recall)
    assert any(o.get("model.attention_heads") == 4 for o in recall)


# ----------------------------------------------------------------------------- bad input


def test_bad_flags():
    with pytest.raises(ValueError, match=r"--cells: unknown cell 'transformer'.*allowed: \["):
        longrange.parse_cells("lstm,transformer")
    with pytest.raises(
        ValueError,
        match=r"--scan=parallel: cell 'lstm' has no parallel form; "
        r"cells with one: \[.*'mingru'",
    ):
        longrange.parse_cells("lstm", "parallel")
    with pytest.raises(ValueError, match="--scan must be one of"):
        longrange.parse_cells("lstm", "chunked")
    assert longrange.parse_cells("mingru,lru", "parallel") == ["mingru", "lru"]
    with pytest.raises(ValueError, match="--lengths: copy: length must be an int >= 0"):
        longrange.parse_lengths("copy", "10,-1")
    with pytest.raises(ValueError, match="--lengths: adding: length must be an int >= 2"):
        longrange.parse_lengths("adding", "1")
    with pytest.raises(ValueError, match="--lengths must be comma-separated integers"):
        longrange.parse_lengths("adding", "ten")
    with pytest.raises(ValueError, match="--task must be one of"):
        longrange.main(["--task=sorting"])


def test_gradflow_only_bad_flags(tmp_path):
    with pytest.raises(ValueError, match="--gradflow_only and --no_gradflow exclude each other"):
        longrange.main(["--gradflow_only", "--no_gradflow", f"--out={tmp_path}"])
    with pytest.raises(
        ValueError,
        match=r"--gradflow_only needs --gradflow_length or the grid's "
        r".*adding_runs\.json",
    ):
        longrange.main(["--gradflow_only", "--lengths=10", f"--out={tmp_path}"])
    with pytest.raises(ValueError, match="--gradflow_length: adding: length must be an int >= 2"):
        longrange.main(["--gradflow_only", "--gradflow_length=1", f"--out={tmp_path}"])


def test_parallel_config_matches_sequential():
    """--scan=parallel builds the cell's associative-scan form; same gradient flow."""
    from rnnbench import diagnostics

    seq = longrange.make_config("adding", "mingru", 12, 0, 10, hidden=8)
    par = longrange.make_config("adding", "mingru", 12, 0, 10, hidden=8, scan="parallel")
    assert par.model.cell_kwargs.parallel is True
    a = diagnostics.gradient_flow(seq, batch_size=4)["grad_norm"]
    b = diagnostics.gradient_flow(par, batch_size=4)["grad_norm"]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)


# ----------------------------------------------------------------------------- gradient flow


def test_gradient_flow_untrained_tanh_decays():
    from rnnbench import diagnostics

    c = longrange.make_config("adding", "rnn", 60, 0, 10, hidden=32)
    flow = diagnostics.gradient_flow(c, batch_size=16)
    rel = flow["relative"]
    assert rel.shape == (60,) and flow["distance"][0] == 0 and rel[0] == pytest.approx(1.0)
    assert np.all(np.isfinite(rel))
    assert rel[40:].max() < 5e-2 * rel[:5].mean()
    assert rel[40:].mean() < rel[20:30].mean() < rel[:10].mean()


def test_gradient_flow_trained_params(tmp_path):
    """load_params restores the run's final checkpoint; training changes the picture."""
    from rnnbench import diagnostics, train

    c = longrange.make_config("adding", "gru", 10, 0, 20, hidden=8)
    c.batch_size, c.task_eval_size = 16, 32
    train.train_and_evaluate(c, str(tmp_path / "run"), wandb_mode="disabled", progress=False)
    params = diagnostics.load_params(c, str(tmp_path / "run"))
    trained = diagnostics.gradient_flow(c, params, batch_size=8)["grad_norm"]
    untrained = diagnostics.gradient_flow(c, batch_size=8)["grad_norm"]
    assert trained.shape == untrained.shape == (10,)
    assert not np.allclose(trained, untrained)
    with pytest.raises(FileNotFoundError):
        diagnostics.load_params(c, str(tmp_path / "none"))


# ----------------------------------------------------------------------------- smoke


@pytest.mark.slow
def test_smoke_suite(tmp_path):
    out = tmp_path / "results"
    summary = longrange.main(["--smoke", f"--out={out}", f"--runs={tmp_path / 'runs'}"])
    assert summary["rows"][0]["metric"] < 0.08
    for stem in ("adding_length", "adding_curves", "adding_gradflow"):
        for ext in (".png", ".json", ".csv", ".md"):
            assert (out / (stem + ext)).stat().st_size > 0, stem + ext
        caption = (out / (stem + ".md")).read_text()
        assert "Command: `python -m experiments.longrange --smoke" in caption
        assert "scan_cost.md" in caption and "Wall time" in caption
        data = json.loads((out / (stem + ".json")).read_text())
        assert data["data"] and data["meta"]["task"] == "adding"
        prov = data["meta"]["provenance"]
        assert prov["cores"] == os.cpu_count() and prov["seeds_per_program"] == 1
        assert prov["precision"] == "float32" and "jax" in prov["versions"]
        assert f"Provenance: {provenance.one_line(prov)}" in caption
    # a restart skips the finished runs
    again = longrange.main(
        ["--smoke", f"--out={out}", f"--runs={tmp_path / 'runs'}", "--no_gradflow"]
    )
    assert again["rows"][0]["metric"] == summary["rows"][0]["metric"]
    assert again["wall_time_s"] < summary["wall_time_s"]
    assert os.path.exists(tmp_path / "runs" / "adding" / "T50" / "gru" / "seed0" / "final.json")
    # the gradient flow alone, from the grid's adding_runs.json: reuses seed 0, keeps the rest
    runs_json = (out / "adding_runs.json").read_text()
    length_md = (out / "adding_length.md").read_text()
    only = longrange.main(
        ["--smoke", f"--out={out}", f"--runs={tmp_path / 'runs'}", "--gradflow_only"]
    )
    assert [(r["workdir"], r["metric"]) for r in only["rows"]] == [
        (summary["rows"][0]["workdir"], summary["rows"][0]["metric"])
    ]
    assert only["files"] == [
        str(out / "adding_gradflow") + e for e in (".png", ".json", ".csv", ".md")
    ]
    assert (out / "adding_runs.json").read_text() == runs_json
    assert (out / "adding_length.md").read_text() == length_md
    caption = (out / "adding_gradflow.md").read_text()
    assert "--gradflow_only`" in caption and "seeds_per_program=1" in caption
    m = summary["rows"][0]["metric"]
    assert f"Test MSE of these runs (the grid's seed 0): gru {m:.3g} ({m:.3g})." in caption
    data = json.loads((out / "adding_gradflow.json").read_text())
    assert data["meta"]["gradflow_length"] == 50 and len(data["data"]) == 50
