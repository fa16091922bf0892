"""experiments/decoders.py on a tiny trained CTC run (tone dataset): each decoder's numbers are
those of the run's own evaluation with that `config.decode`, the LM is the validation pick, and
the table is rendered from its JSON alone."""

import json
import os
import shutil
from pathlib import Path

import pytest
from toy import with_decode

from experiments import decoder_runs, decoders
from rnnbench import char_lm, grid, inference


@pytest.fixture(scope="module")
def comparison(ctc_run):
    workdir, ds, _ = ctc_run
    return decoders.compare(
        [workdir],
        beam=3,
        lm_orders=(2, 3),
        lm_weights=(0.5, 2.0),
        insertion_bonuses=(0.0,),
        dataset=ds,
        progress=False,
    )


def test_each_decoder_scores_as_the_runs_own_evaluation(ctc_run, comparison, tmp_path):
    workdir, ds, final = ctc_run
    (run,) = comparison["per_run"]
    n_test = len(ds.splits["test"])
    assert {name: r["utterances"] for name, r in run["test"].items()} == {
        "greedy": n_test,
        "beam": n_test,
        "beam_lm": n_test,
    }
    # greedy: the training's final evaluation (greedy) to the digit
    assert run["test"]["greedy"]["cer"] == pytest.approx(final["test_cer"])
    assert run["test"]["greedy"]["wer"] == pytest.approx(final["test_wer"])
    # beam and beam + LM: rnnbench.inference scoring a copy of the run with that config.decode
    for name in ("beam", "beam_lm"):
        decode = comparison["decoders"][name]
        copy = with_decode(workdir, tmp_path / name, decode)
        if decode.get("lm_order"):  # as training does: the LM fitted on the training text
            lm = char_lm.CharNgramLM.fit(
                ds.splits["train"].transcripts, order=decode["lm_order"], alphabet=ds.classes
            )
            with open(os.path.join(copy, "char_lm.json"), "w") as f:
                f.write(lm.to_json())
        run_copy = inference.load_run(copy)
        metrics, _ = inference.score(run_copy, ds, "test")
        assert run["test"][name]["cer"] == pytest.approx(metrics["cer"]), name
        assert run["test"][name]["wer"] == pytest.approx(metrics["wer"]), name
    assert comparison["decoders"]["beam"] == {"beam": 3, "token_prune": 5}


def test_lm_is_the_validation_pick(comparison):
    grid = comparison["lm_grid"]["results"]
    assert [(g["lm_order"], g["lm_weight"]) for g in grid] == [
        (2, 0.5),
        (2, 2.0),
        (3, 0.5),
        (3, 2.0),
    ]
    best = min(
        grid,
        key=lambda g: (
            g["val"][0]["cer"],
            g["val"][0]["wer"],
            g["lm_weight"],
            g["insertion_bonus"],
            g["lm_order"],
        ),
    )
    picked = comparison["decoders"]["beam_lm"]
    assert (picked["lm_order"], picked["lm_weight"], picked["insertion_bonus"]) == (
        best["lm_order"],
        best["lm_weight"],
        best["insertion_bonus"],
    )
    (run,) = comparison["per_run"]
    assert run["val"]["beam_lm"]["cer"] == best["val"][0]["cer"]


def test_rows_hold_the_runs_numbers_and_the_paired_change(comparison):
    (run,) = comparison["per_run"]
    rows = {r["decoder"]: r for r in comparison["rows"]}
    assert list(rows) == ["greedy", "beam", "beam_lm"]
    for name, row in rows.items():
        assert row["test_cer"]["n"] == 1 and row["test_cer"]["std"] is None
        assert row["test_cer"]["mean"] == run["test"][name]["cer"]
        assert row["delta_cer"]["mean"] == pytest.approx(
            run["test"][name]["cer"] - run["test"]["greedy"]["cer"]
        )
        t = run["test"][name]
        assert row["search_utt_per_s"]["mean"] == pytest.approx(t["utterances"] / t["search_s"])
        assert row["end_to_end_utt_per_s"]["mean"] == pytest.approx(
            t["utterances"] / (t["search_s"] + t["forward_s"])
        )
    assert rows["greedy"]["delta_cer"]["mean"] == 0.0


def test_table_written_atomically_and_rendered_again_from_json(comparison, tmp_path):
    out = str(tmp_path / "results" / "ctc_decoders")
    rep = decoders.write(
        comparison,
        out,
        commands=["python -m experiments.decoders --x"],
        reproduce_command="python -m experiments.reproduce ctc_decoders",
    )
    md = Path(out + ".md").read_text().splitlines()
    assert md[4:7] == ["```", "python -m experiments.reproduce ctc_decoders", "```"]
    assert "python -m experiments.decoders --x" in md
    table = [line for line in md if line.startswith("| ")]
    assert len(table) == 4 and table[1].startswith("| greedy (best path) | 1 |")
    picked = comparison["decoders"]["beam_lm"]
    assert table[3].startswith(f"| beam 3 + {picked['lm_order']}-gram char LM")
    greedy_cer = comparison["rows"][0]["test_cer"]["mean"] * 100
    assert f"| {greedy_cer:.2f} |" in table[1]
    assert not [f for f in os.listdir(tmp_path / "results") if f.startswith(".tmp-")]
    before = Path(out + ".md").read_text()
    again = decoders.render(out + ".json")
    assert Path(out + ".md").read_text() == before
    assert again["rows"] == json.loads(json.dumps(rep["rows"]))


def test_time_decoding_writes_the_runs_speed(ctc_run, tmp_path):
    workdir, ds, final = ctc_run
    copy = str(tmp_path / "run")
    shutil.copytree(workdir, copy)
    result = decoders.time_decoding(copy, "test", dataset=ds)
    saved = json.loads(Path(copy, decoders.SPEED_FILE).read_text())
    assert saved["utterances"] == len(ds.splits["test"]) == result["utterances"]
    assert saved["utterances_per_s"] == pytest.approx(saved["utterances"] / saved["seconds"])
    assert saved["metrics"]["cer"] == pytest.approx(final["test_cer"])


def test_bad_input_is_named(tmp_path, ctc_run):
    with pytest.raises(ValueError, match="no runs to compare"):
        decoder_runs.load_runs([], kind="ctc")
    with pytest.raises(ValueError, match="--beam must be >= 1"):
        decoders.compare([ctc_run[0]], beam=0, dataset=ctc_run[1], progress=False)
    with pytest.raises(ValueError, match="cannot read its sweep.json"):
        grid.finished_runs(str(tmp_path))
    with pytest.raises(ValueError, match="not a decoder comparison"):
        (tmp_path / "x.json").write_text('{"rows": []}')
        decoders.render(str(tmp_path / "x.json"))
