"""The objective registry and the task objects: picking, checks, losses and evaluation."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from toy import tone_dataset

from experiments.configs import ctc as ctc_config
from rnnbench import objectives
from rnnbench.objectives import ctc as ctc_objective


def test_registry_picks_by_model_kind_and_dataset_task():
    assert objectives.find("classifier", "classify").name == "classify"
    assert objectives.find("classifier", "regress").name == "regress"
    assert objectives.find("tagger", "tag").name == "tag"
    assert objectives.find("ctc", "ctc").name == "ctc"
    with pytest.raises(
        ValueError,
        match=r"digits is a ctc task but config.model.kind='tagger'; "
        r"use one of \[.*'ctc'.*\]",
    ):
        objectives.find("tagger", "ctc", "digits")
    with pytest.raises(ValueError, match="'poetry' task, which no objective trains"):
        objectives.find("classifier", "poetry")
    with pytest.raises(ValueError, match="registered twice"):
        objectives.register(type("Dup", (objectives.Objective,), {"name": "ctc"}))


def test_weighted_loss_ignores_padding_rows():
    o = objectives.find("classifier", "classify")()
    logits = jnp.array([[4.0, 0.0], [0.0, 4.0], [9.0, -9.0]])
    batch = {"labels": jnp.array([0, 0, 1]), "weights": jnp.array([1.0, 1.0, 0.0])}
    loss, sums = o.loss(logits, {}, batch)
    ce = -np.log(np.exp(4) / (np.exp(4) + 1)), -np.log(1 / (np.exp(4) + 1))
    np.testing.assert_allclose(loss, (ce[0] + ce[1]) / 2, rtol=1e-6)
    assert float(sums["correct"]) == 1.0 and float(sums["count"]) == 2.0
    acc = o.new_accumulator()
    o.accumulate(acc, None, None, {k: np.asarray(v) for k, v in sums.items()})
    o.accumulate(acc, None, None, {k: np.asarray(v) for k, v in sums.items()})
    assert o.summarize(acc, None) == pytest.approx(
        {"loss": (ce[0] + ce[1]) / 2, "examples": 4, "accuracy": 0.5}
    )


def test_tag_accuracy_counts_only_scored_steps():
    o = objectives.find("tagger", "tag")()
    logits = jnp.log(jnp.array([[[0.9, 0.1], [0.9, 0.1], [0.1, 0.9]]]))
    batch = {
        "targets": jnp.array([[0, 1, 1]]),
        "target_mask": jnp.array([[0.0, 1.0, 1.0]]),
        "weights": jnp.ones(1),
    }
    _, sums = o.loss(logits, {}, batch)
    assert float(sums["correct"]) == 1.0 and float(sums["scored"]) == 2.0
    np.testing.assert_allclose(o.train_metrics(sums)["accuracy"], 0.5)


def _ctc_objective(**decode):
    config = ctc_config.get_config("lstm")
    config.decode = ml_collections.ConfigDict(decode)
    return objectives.make(config, tone_dataset("ctc")), tone_dataset("ctc")


def test_ctc_decode_settings_are_checked():
    for bad, match in [
        ({"beam": -1}, "beam must be >= 0"),
        ({"beam": 4, "lm_weight": 0.5}, "needs lm_weight >= 0 and an LM"),
        ({"lm_order": 3}, "needs beam search"),
        ({"beems": 3}, r"unknown config.decode fields \['beems'\]"),
    ]:
        with pytest.raises(ValueError, match=match):
            _ctc_objective(**bad)


def test_ctc_final_evaluation_decodes_with_the_beam():
    """Greedy reads '' off the best path (blank, blank: 0.16); the labelling 'a' has 0.4025 in
    total over its three alignments, which the final evaluation's beam search finds."""
    o, ds = _ctc_objective(beam=8, lm_order=2, lm_weight=0.0)
    assert o.lm is not None  # estimated from the training transcripts
    blank, a, b = 0, ds.encode("a")[0], ds.encode("b")[0]
    p = np.full((2, len(ds.classes) + 1), 1e-12)
    p[:, [blank, a, b]] = 0.4, 0.35, 0.25
    p /= p.sum(-1, keepdims=True)
    out = {
        "best_path": np.argmax(p, -1)[None],
        "frame_lengths": np.array([2]),
        "log_probs": np.log(p)[None],
    }
    assert ds.decode(o.hypothesis(out, 0, final=False)) == ""
    assert ds.decode(o.hypothesis(out, 0, final=True)) == "a"
    assert ctc_objective.decode_settings(ml_collections.ConfigDict({}))["beam"] == 0


@pytest.mark.parametrize(
    "kind,extra",
    [
        ("las", {"ctc_weight": 0.3, "label_smoothing": 0.1, "decoder_cell": "gru"}),
        ("transducer", {"pred_cell": "lstm"}),
    ],
)
def test_recognisers_train_through_the_one_loop(tmp_path, kind, extra):
    """LAS (joint CTC/attention) and the transducer plug into the same jitted step: the loss
    falls, the final evaluation decodes inside jit and reports CER/WER, inference restores."""
    import json

    from toy import small_config

    from rnnbench import inference, train

    c = small_config("lstm")
    c.model.kind = kind
    c.model.frontend.channels = 0
    for k, v in extra.items():
        c.model[k] = v
    c.num_steps, c.eval_every, c.checkpoint_every, c.log_every = 12, 6, 12, 1
    c.optimizer.learning_rate = 1e-2
    ds = tone_dataset("ctc", n=16)
    final = train.train_and_evaluate(
        c, str(tmp_path), wandb_mode="disabled", progress=False, dataset=ds
    )
    assert final["objective"] == kind and final["primary_metric"] == "cer"
    assert 0.0 <= final["test_cer"] and np.isfinite(final["test_loss"])
    losses = [
        json.loads(line)["loss"]
        for line in open(tmp_path / "metrics.jsonl")
        if json.loads(line)["split"] == "train"
    ]
    assert losses[-1] < losses[0]
    run = inference.load_run(str(tmp_path))
    metrics, records = inference.score(run, ds, "test")
    assert metrics["cer"] == pytest.approx(final["test_cer"])
    assert all(set(r["hypothesis"]) <= set("ab ") for r in records)
    if kind != "las":
        with pytest.raises(ValueError, match="alignments exist for model.kind 'las' only"):
            inference.alignments(run, ds, "test", 2)
        return
    aligned = inference.alignments(run, ds, "test", 3)
    assert [ref for _, _, ref in aligned] == ds.splits["test"].transcripts[:3]
    for weights, tokens, ref in aligned:  # one row per character then eos, over valid frames
        assert tokens == list(ref) + ["<eos>"] and weights.shape[0] == len(ref) + 1
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)


def test_a_run_decoded_with_an_lm_keeps_its_lm_for_inference(tmp_path):
    """The char LM is fitted on the training transcripts once and saved in the workdir, so a
    restored run decodes exactly as its final evaluation did, without the training data."""
    from toy import small_config

    from rnnbench import inference, train

    c = small_config("lstm")
    c.model.kind = "ctc"
    c.model.frontend.channels = 0
    c.num_steps, c.eval_every, c.checkpoint_every = 8, 8, 8
    c.decode = ml_collections.ConfigDict({"beam": 4, "lm_order": 2, "lm_weight": 0.5})
    ds = tone_dataset("ctc", n=16)
    final = train.train_and_evaluate(
        c, str(tmp_path), wandb_mode="disabled", progress=False, dataset=ds
    )
    assert (tmp_path / "char_lm.json").exists()
    run = inference.load_run(str(tmp_path))
    assert run.objective.lm.to_json() == (tmp_path / "char_lm.json").read_text()
    metrics, _ = inference.score(run, ds, "test")
    assert metrics["cer"] == pytest.approx(final["test_cer"])
    (tmp_path / "char_lm.json").unlink()
    with pytest.raises(ValueError, match=r"char_lm.json: the run decodes with a character LM"):
        inference.load_run(str(tmp_path))
