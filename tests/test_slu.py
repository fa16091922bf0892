"""Spoken language understanding: meaning ids, the intent model and objective (direct), the text
parser (pipeline), and training through the real loop on a tiny hand-made corpus."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rnnbench import models, objectives, slu, text_parser, train
from rnnbench.data import CTC_ALPHABET, Dataset, Split, meanings, phrases
from rnnbench.objectives.intent import Intent
from tests import toy

CODEC = meanings.synth_phrases_codec()
TIMER = {"intent": "set_timer", "slots": {"number": "25", "unit": "minutes"}}
KITCHEN_ON = {"intent": "lights", "slots": {"action": "on", "room": "kitchen"}}
LIGHTS_OFF = {"intent": "lights", "slots": {"action": "off", "room": "none"}}
CANCEL = {"intent": "cancel", "slots": {}}


# ----------------------------------------------------------------------------- meaning ids


def test_codec_round_trips_the_whole_grammar():
    S = len(CODEC.slot_names)
    assert CODEC.intents == phrases.INTENTS
    assert S == len({s for slots in phrases.SCHEMA.values() for s in slots}) == 18
    assert all(v[0] == "none" for v in CODEC.slot_values)
    assert CODEC.slot_mask.shape == (10, S) and CODEC.slot_mask.sum() == S  # names are unique
    for intent in phrases.INTENTS:
        for m in phrases.meanings(intent)[::7]:
            i, slots = CODEC.encode(m)
            assert slots.shape == (S,) and slots.dtype == np.int32
            assert CODEC.decode(i, slots) == m
    i, slots = CODEC.encode(LIGHTS_OFF)
    room = CODEC.slot_names.index("room")
    assert CODEC.intents[i] == "lights" and slots[room] == 0  # "none" is value id 0
    assert CODEC.format(TIMER) == "set_timer(number=25, unit=minutes)"
    assert CODEC.format(LIGHTS_OFF) == "lights(action=off)" and CODEC.format(CANCEL) == "cancel()"
    assert (
        CODEC.format({"intent": "ask_math", "slots": {"b": "2", "a": "1", "op": "add"}})
        == "ask_math(a=1, op=add, b=2)"
    )


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"intent": "fly", "slots": {}}, "unknown intent 'fly'"),
        ({"intent": "lights", "slots": {"action": "on"}}, "intent 'lights' has slots"),
        (
            {"intent": "lights", "slots": {"action": "up", "room": "none"}},
            r"slot lights.action = 'up' is outside the schema",
        ),
        ("lights on", "a meaning is a dict"),
    ],
)
def test_codec_rejects_meanings_outside_the_schema(bad, match):
    with pytest.raises(ValueError, match=match):
        CODEC.encode(bad)


# ----------------------------------------------------------------------------- model and metrics


@pytest.mark.parametrize(
    "pooling, bidirectional",
    [("last", True), ("attention", False), ("head_attention", True)],
)
def test_intent_model_outputs(pooling, bidirectional):
    cfg = toy.small_config(pooling=pooling, bidirectional=bidirectional).model.to_dict()
    cfg["kind"] = "intent"
    model = models.build(cfg, num_features=16, num_classes=10, rngs=nnx.Rngs(0))
    assert isinstance(model, slu.IntentModel)
    x = jax.random.normal(jax.random.key(1), (3, 20, 16))
    graphdef, state = nnx.split(model)
    apply = jax.jit(lambda state, x, n: nnx.merge(graphdef, state)(x, n))
    out, aux = apply(state, x, jnp.array([20, 11, 5]))
    V = max(CODEC.slot_sizes)
    assert out["intent"].shape == (3, 10) and out["slots"].shape == (3, 18, V)
    for s, size in enumerate(CODEC.slot_sizes):  # padding logits beyond each slot's values
        assert np.all(np.asarray(out["slots"][:, s, size:]) == slu.PAD_LOGIT)
        assert np.all(np.abs(np.asarray(out["slots"][:, s, :size])) < 100)
    assert aux["states"].shape[0] == 3 and "ctc_logits" not in aux
    # the auxiliary CTC head: frame logits over the num_classes characters and the blank
    cfg["ctc_weight"] = 0.3
    model = models.build(cfg, num_features=16, num_classes=7, rngs=nnx.Rngs(0))
    out, aux = model(x, jnp.array([20, 11, 5]))
    assert aux["ctc_logits"].shape == (*aux["states"].shape[:2], 8)
    assert out["intent"].shape == (3, 10)  # the intents are the schema's, not num_classes


def test_head_attention_gives_each_head_its_own_query():
    """AttentionPooling with K queries: pooled [B, K, D], query k the same average as a
    one-query pooling whose score vector is column k; padded steps get weight 0."""
    from rnnbench import attention

    h = jax.random.normal(jax.random.key(0), (2, 7, 6))
    lengths = jnp.array([7, 3])
    multi = attention.AttentionPooling(6, queries=4, rngs=nnx.Rngs(0))
    pooled, weights = multi(h, lengths)
    assert pooled.shape == (2, 4, 6) and weights.shape == (2, 4, 7)
    assert np.all(np.asarray(weights[1, :, 3:]) == 0.0)
    np.testing.assert_allclose(np.asarray(weights.sum(-1)), 1.0, rtol=1e-6)
    for k in range(4):
        one = attention.AttentionPooling(6, rngs=nnx.Rngs(1))
        one.proj = multi.proj
        one.score.kernel[...] = multi.score.kernel[...][:, k : k + 1]
        p1, w1 = one(h, lengths)
        np.testing.assert_allclose(np.asarray(p1), np.asarray(pooled[:, k]), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(w1), np.asarray(weights[:, k]), rtol=1e-5)
    assert not np.allclose(np.asarray(pooled[:, 0]), np.asarray(pooled[:, 1]))


def _logits_for(rows):
    """Hand-made outputs: each row is (intent id, slot ids [S]) the model 'predicts'."""
    V = max(CODEC.slot_sizes)
    intent = np.full((len(rows), 10), -5.0, np.float32)
    slots = np.full((len(rows), 18, V), -5.0, np.float32)
    for r, (i, s) in enumerate(rows):
        intent[r, i] = 5.0
        slots[r, np.arange(18), s] = 5.0
    return {"intent": jnp.asarray(intent), "slots": jnp.asarray(slots)}


def test_exact_meaning_metrics_on_hand_made_outputs():
    refs = [TIMER, KITCHEN_ON, KITCHEN_ON, LIGHTS_OFF, CANCEL]
    enc = [CODEC.encode(m) for m in refs]
    room, number = CODEC.slot_names.index("room"), CODEC.slot_names.index("number")
    preds = [(i, s.copy()) for i, s in enc]
    preds[1] = (CODEC.intents.index("cancel"), preds[1][1])  # intent wrong, slots right
    preds[2][1][room] = 0  # a slot of the intent wrong
    preds[3][1][number] = 4  # another intent's slot: ignored
    preds[4] = (CODEC.intents.index("volume"), preds[4][1])  # a padding row (weight 0)
    batch = {
        "intent": jnp.array([i for i, _ in enc]),
        "slots": jnp.stack([s for _, s in enc]),
        "weights": jnp.array([1.0, 1, 1, 1, 0]),
    }
    obj = Intent()
    outputs = _logits_for(preds)
    _, sums = obj.loss(outputs, {}, batch)
    assert float(sums["count"]) == 4.0
    assert float(sums["meaning_correct"]) == 2.0  # rows 0 and 3
    assert float(sums["intent_correct"]) == 3.0
    acc = obj.new_accumulator()
    obj.accumulate(
        acc, None, batch, jax.device_get({**sums, **obj.eval_outputs(None, outputs, {}, batch)})
    )
    m = obj.summarize(acc, None)
    assert m["meaning_accuracy"] == 0.5 and m["intent_accuracy"] == 0.75 and m["examples"] == 4
    # slots of the reference intents: number, unit (1 row); action, room (3 rows)
    assert m["slot_number_accuracy"] == 1.0 and m["slot_unit_accuracy"] == 1.0
    assert m["slot_action_accuracy"] == 1.0 and m["slot_room_accuracy"] == pytest.approx(2 / 3)
    assert m["slot_accuracy"] == pytest.approx(7 / 8) and "slot_city_accuracy" not in m
    train_m = jax.device_get(obj.train_metrics(sums))
    assert train_m["meaning_accuracy"] == 0.5 and train_m["slot_accuracy"] == pytest.approx(7 / 8)
    out = jax.device_get(obj.eval_outputs(None, outputs, {}, batch))
    assert obj.prediction(out, 0, None) == "set_timer(number=25, unit=minutes)"
    assert obj.prediction(out, 2, None) == "lights(action=on)"
    assert obj.prediction(out, 1, None) == "cancel()"


def test_loss_is_intent_ce_plus_mean_ce_of_the_intents_slots():
    enc = [CODEC.encode(m) for m in (TIMER, CANCEL)]
    batch = {
        "intent": jnp.array([i for i, _ in enc]),
        "slots": jnp.stack([s for _, s in enc]),
        "weights": jnp.ones(2),
    }
    V = max(CODEC.slot_sizes)
    k1, k2 = jax.random.split(jax.random.key(0))
    outputs = {"intent": jax.random.normal(k1, (2, 10)), "slots": jax.random.normal(k2, (2, 18, V))}
    per, _ = Intent().per_example(outputs, {}, batch)
    for r in range(2):
        li = jax.nn.log_softmax(outputs["intent"][r])
        ls = jax.nn.log_softmax(outputs["slots"][r], -1)
        own = np.flatnonzero(CODEC.slot_mask[batch["intent"][r]])  # number, unit; none
        slot_ce = -np.mean([ls[s, batch["slots"][r, s]] for s in own]) if own.size else 0.0
        assert float(per[r]) == pytest.approx(float(-li[batch["intent"][r]] + slot_ce), rel=1e-5)
    assert CODEC.slot_mask[batch["intent"]].sum() == 2

    # with model.ctc_weight w: (1 - w) * that + w * CTC of the transcript per label
    c = intent_config()
    c.model.ctc_weight = 0.25
    logits = jax.random.normal(jax.random.key(3), (2, 9, 5))
    labels, label_lengths = jnp.array([[1, 2, 2], [3, 0, 0]]), jnp.array([3, 1])
    aux = {"ctc_logits": logits, "lengths": jnp.array([9, 6])}
    joint, _ = Intent(c).per_example(
        outputs, aux, dict(batch, labels=labels, label_lengths=label_lengths)
    )
    pad_t = (jnp.arange(9)[None] >= aux["lengths"][:, None]).astype(jnp.float32)
    pad_l = (jnp.arange(3)[None] >= label_lengths[:, None]).astype(jnp.float32)
    ctc = optax.ctc_loss(logits, pad_t, labels, pad_l) / label_lengths
    np.testing.assert_allclose(joint, 0.75 * per + 0.25 * ctc, rtol=1e-5)
    with pytest.raises(ValueError, match="no aux\\['ctc_logits'\\]"):
        Intent(c).per_example(outputs, {}, dict(batch, labels=labels, label_lengths=label_lengths))
    c.model.ctc_weight = 1.0
    with pytest.raises(ValueError, match=r"ctc_weight must be in \[0, 1\) for the intent task"):
        Intent(c)


# ----------------------------------------------------------------------------- data checks


def tone_meaning_dataset(
    n=24, seed=0, meanings_=(KITCHEN_ON, LIGHTS_OFF, CANCEL), seconds=(0.2, 0.3)
):
    """Tiny corpus: each meaning is said as a pure tone at its own pitch (plus a transcript)."""
    rng = np.random.default_rng(seed)
    texts = {json.dumps(m, sort_keys=True): phrases.phrasings(m)[0] for m in meanings_}
    splits = {}
    for name in ("train", "validation", "test"):
        ms = [meanings_[i % len(meanings_)] for i in range(n)]
        audio = []
        for i in range(n):
            length = int(toy.SR * rng.uniform(*seconds))
            x = 0.01 * rng.normal(size=length)
            t = np.arange(length // 2) / toy.SR
            x[length // 4 : length // 4 + t.size] += 0.5 * np.sin(
                2 * np.pi * (300 + 600 * (i % 3)) * t
            )
            audio.append((x * 32767).astype(np.int16))
        splits[name] = Split(
            audio,
            None,
            [texts[json.dumps(m, sort_keys=True)] for m in ms],
            ["s"] * n,
            meanings=list(ms),
        )
    return Dataset("tone_meanings", "ctc", list(CTC_ALPHABET), splits)


def intent_config():
    c = toy.small_config(pooling="mean")
    c.model.kind = "intent"
    c.dataset = "synth_phrases"
    return c


def test_check_names_the_utterance_without_a_meaning_or_outside_the_schema():
    c = intent_config()
    ds = tone_meaning_dataset()
    objectives.make(c, ds)  # fine as made
    assert isinstance(objectives.make(c, ds), Intent)
    ds.splits["validation"].meanings[3] = {
        "intent": "lights",
        "slots": {"action": "on", "room": "moon"},
    }
    with pytest.raises(
        ValueError,
        match=r"tone_meanings validation example 3 \('turn the "
        r"kitchen lights on'\): .*room = 'moon' is outside",
    ):
        objectives.make(c, ds)
    ds.splits["validation"].meanings[3] = None
    with pytest.raises(ValueError, match="validation example 3 .* has no meaning"):
        objectives.make(c, ds)
    ds.splits["validation"].meanings = None
    with pytest.raises(ValueError, match="tone_meanings validation has no meanings"):
        objectives.make(c, ds)
    with pytest.raises(ValueError, match="no meanings"):
        objectives.make(c, toy.tone_dataset("ctc"))


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("ctc_weight", [0.0, pytest.param(0.3, marks=pytest.mark.slow)])
def test_training_through_the_real_loop_lowers_the_loss(tmp_path, ctc_weight):
    c = intent_config()
    steps = 20 if not ctc_weight else 40  # the tones say no letters: CTC competes for the encoder
    c.num_steps, c.eval_every, c.checkpoint_every, c.log_every = steps, steps, steps, 1
    c.optimizer.learning_rate = 1e-2
    c.model.ctc_weight = ctc_weight  # > 0: the auxiliary CTC loss on the transcripts too
    final = train.train_and_evaluate(
        c, str(tmp_path), progress=False, dataset=tone_meaning_dataset(seconds=(0.7, 0.8))
    )
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        losses = [r["loss"] for r in map(json.loads, f) if r["split"] == "train"]
    assert len(losses) == steps
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])
    assert final["objective"] == "intent" and final["primary_metric"] == "meaning_accuracy"
    assert final["test_examples"] == 24
    # 3 meanings, 8 test clips each: far above chance, never above the intent's accuracy
    assert 0.5 < final["test_meaning_accuracy"] <= final["test_intent_accuracy"]
    assert {"test_slot_action_accuracy", "test_slot_room_accuracy"} < set(final)
    assert "test_slot_city_accuracy" not in final  # no weather utterance in this corpus


# ----------------------------------------------------------------------------- text parser


def test_text_parser_learns_a_toy_set():
    pool = [m for intent in ("lights", "call", "cancel") for m in phrases.meanings(intent)[::3]]
    rng = np.random.default_rng(0)
    said = [(t, m) for m in pool for t in phrases.phrasings(m)]
    train_rows = [said[i] for i in rng.permutation(len(said))]
    parser = text_parser.TextParser(hidden=32, steps=150, batch_size=32, learning_rate=1e-2)
    parser.fit([t for t, _ in train_rows], [m for _, m in train_rows])
    assert parser.losses[-1] < 0.1 * parser.losses[0]
    picks = [
        next((t, m) for t, m in said if m["intent"] == i) for i in ("lights", "call", "cancel")
    ]
    assert parser.parse_all([t for t, _ in picks]) == [m for _, m in picks]
    score = parser.score([t for t, _ in said], [m for _, m in said])
    assert score["meaning_accuracy"] > 0.9 and score["intent_accuracy"] == 1.0
    with pytest.raises(ValueError, match=r"training example 1 \('x'\): .*unknown intent"):
        text_parser.TextParser().fit(["cancel", "x"], [CANCEL, {"intent": "x", "slots": {}}])


@pytest.mark.slow
def test_pipeline_scores_a_recogniser_with_the_parser(tmp_path):
    from experiments import slu_pipeline
    from rnnbench import metrics

    ds = tone_meaning_dataset(seconds=(0.5, 0.6))
    c = toy.small_config()
    c.model.kind, c.model.frontend.channels, c.dataset = "ctc", 0, "synth_phrases"
    c.num_steps, c.eval_every, c.checkpoint_every = 6, 6, 6
    train.train_and_evaluate(c, str(tmp_path), progress=False, dataset=ds)
    out = slu_pipeline.run_pipeline(str(tmp_path), "test", dataset=ds, parser_steps=60)
    utts = out["utterances"]
    assert out["examples"] == len(utts) == 24 and out["objective"] == "intent_pipeline"
    assert out["test_reference_meaning_accuracy"] == 1.0  # 3 transcripts, all seen in training
    assert out["test_meaning_accuracy"] == pytest.approx(np.mean([u["correct"] for u in utts]))
    rates = metrics.error_rates([u["reference"] for u in utts], [u["hypothesis"] for u in utts])
    assert out["test_cer"] == pytest.approx(rates["cer"])
    assert {u["meaning"] for u in utts} == {
        "lights(action=on, room=kitchen)",
        "lights(action=off)",
        "cancel()",
    }
    direct = intent_config()
    direct.num_steps, direct.eval_every, direct.checkpoint_every = 2, 2, 2
    train.train_and_evaluate(direct, str(tmp_path / "direct"), progress=False, dataset=ds)
    with pytest.raises(ValueError, match="kind 'intent'; the pipeline needs a recogniser"):
        slu_pipeline.run_pipeline(str(tmp_path / "direct"), dataset=ds)
