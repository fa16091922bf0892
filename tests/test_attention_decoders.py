"""experiments/attention_decoders.py on a tiny trained joint CTC/attention run (tone dataset): each
decoder's numbers are those of the run's own evaluation with that `config.decode`, the CTC weight
is the validation pick, and the table is rendered from its JSON alone."""

import json
import statistics

import pytest
from toy import small_config, tone_dataset, with_decode

from experiments import attention_decoders
from rnnbench import inference, train


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory):
    """A tiny las run trained with a CTC head: (workdir, dataset, final metrics)."""
    workdir = str(tmp_path_factory.mktemp("joint_run"))
    c = small_config("lstm")
    c.model.kind = "las"
    c.model.ctc_weight = 0.3
    c.model.frontend.channels = 0
    c.num_steps, c.eval_every, c.checkpoint_every = 30, 30, 30
    c.optimizer.learning_rate = 1e-2
    ds = tone_dataset("ctc", n=16)
    final = train.train_and_evaluate(c, workdir, wandb_mode="disabled", progress=False, dataset=ds)
    return workdir, ds, final


@pytest.fixture(scope="module")
def comparison(joint_run):
    workdir, ds, _ = joint_run
    return attention_decoders.compare(
        [workdir], beam=2, ctc_weights=(0.3, 0.8), dataset=ds, progress=False
    )


def test_each_decoder_scores_as_the_runs_own_evaluation(joint_run, comparison, tmp_path):
    workdir, ds, final = joint_run
    (run,) = comparison["per_run"]
    assert list(run["test"]) == ["greedy", "beam", "beam_ctc"]
    assert {r["utterances"] for r in run["test"].values()} == {len(ds.splits["test"])}
    # greedy: the training's final evaluation (decode.beam 1) to the digit
    assert run["test"]["greedy"]["cer"] == pytest.approx(final["test_cer"])
    assert run["test"]["greedy"]["wer"] == pytest.approx(final["test_wer"])
    # beam and joint beam: rnnbench.inference scoring a copy of the run with that config.decode
    for name in ("beam", "beam_ctc"):
        decode = comparison["decoders"][name]
        run_copy = inference.load_run(with_decode(workdir, tmp_path / name, decode))
        metrics, _ = inference.score(run_copy, ds, "test")
        assert run["test"][name]["cer"] == pytest.approx(metrics["cer"]), name
        assert run["test"][name]["wer"] == pytest.approx(metrics["wer"]), name
    assert comparison["decoders"]["beam"] == {"beam": 2, "ctc_weight": 0.0, "length_bonus": 0.0}


def test_ctc_weight_is_the_validation_pick(comparison):
    results = comparison["ctc_weight_grid"]["results"]
    assert [r["ctc_weight"] for r in results] == [0.3, 0.8]
    best = min(
        results,
        key=lambda r: (
            statistics.mean(v["cer"] for v in r["val"]),
            statistics.mean(v["wer"] for v in r["val"]),
            r["ctc_weight"],
        ),
    )
    assert comparison["decoders"]["beam_ctc"]["ctc_weight"] == best["ctc_weight"]
    (run,) = comparison["per_run"]
    assert run["val"]["beam_ctc"]["cer"] == best["val"][0]["cer"]


def test_rows_and_table_rendered_again_from_json(comparison, tmp_path):
    rows = {r["decoder"]: r for r in comparison["rows"]}
    (run,) = comparison["per_run"]
    for name, row in rows.items():
        assert row["test_cer"]["values"] == [run["test"][name]["cer"]]
        assert row["delta_cer"]["values"] == [
            pytest.approx(run["test"][name]["cer"] - run["test"]["greedy"]["cer"])
        ]
        assert row["utt_per_s"]["n"] == 1 and row["utt_per_s"]["mean"] > 0
    out = str(tmp_path / "table")
    rep = attention_decoders.write(comparison, out, commands=["python -m x"])
    md = open(out + ".md").read()
    assert md.startswith("# table: attention decoders on `tones_ctc`")
    assert "beam 2 + CTC prefix scores (weight" in md and md.count("\n| ") == 4
    again = attention_decoders.render(out + ".json", reproduce_command="python -m y")
    assert again["rows"] == json.loads(json.dumps(rep["rows"]))
    assert open(out + ".md").read().split("```")[-1] == md.split("```")[-1]  # numbers unchanged


def test_bad_input_is_named(ctc_run, joint_run, tmp_path):
    with pytest.raises(ValueError, match="this decoder comparison needs las runs"):
        attention_decoders.compare([ctc_run[0]], progress=False)
    with pytest.raises(ValueError, match=r"--ctc_weights must be in \(0, 1\]"):
        attention_decoders.compare([joint_run[0]], ctc_weights=(0.0,), progress=False)
    other = tmp_path / "ctc.json"
    other.write_text(json.dumps({"kind": "ctc_decoders"}))
    with pytest.raises(ValueError, match="ctc.json is not an attention decoder comparison"):
        attention_decoders.render(str(other))


def test_load_run_decodes_with_given_settings(joint_run, comparison):
    """inference.load_run(decode=...) (evaluate/transcribe --decode) scores as the comparison's
    joint decoder: the run decodes as if trained with those config.decode fields."""
    workdir, ds, _ = joint_run
    decode = comparison["decoders"]["beam_ctc"]
    run = inference.load_run(
        workdir,
        decode=inference.parse_decode(
            [f"beam={decode['beam']}", f"ctc_weight={decode['ctc_weight']}"]
        ),
    )
    assert run.config.decode.beam == 2 and run.config.decode.ctc_weight == decode["ctc_weight"]
    metrics, _ = inference.score(run, ds, "test")
    (per_run,) = comparison["per_run"]
    assert metrics["cer"] == pytest.approx(per_run["test"]["beam_ctc"]["cer"])


def test_bad_decode_settings_are_named(joint_run, ctc_run):
    assert inference.parse_decode(["beam=10", "ctc_weight=0.3", "x=abc"]) == {
        "beam": 10,
        "ctc_weight": 0.3,
        "x": "abc",
    }
    with pytest.raises(ValueError, match=r"--decode item 'beam': expected key=value"):
        inference.parse_decode(["beam"])
    with pytest.raises(ValueError, match=r"unknown config.decode fields \['bogus'\]"):
        inference.load_run(joint_run[0], decode={"bogus": 1})
    with pytest.raises(ValueError, match=r"config.decode.ctc_weight must be in \[0, 1\]"):
        inference.load_run(joint_run[0], decode={"ctc_weight": 2.0})
    with pytest.raises(ValueError, match=r"char_lm.json: the run decodes with a character LM"):
        inference.load_run(ctc_run[0], decode={"beam": 3, "lm_order": 3})
