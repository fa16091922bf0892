"""synth_phrases: the grammar (schema, phrasings, parse), the two splits, rendering and caching."""

import collections
import json
import os
import re

import numpy as np
import pytest

from rnnbench.data import CTC_ALPHABET, Split, load, phrases, synth
from rnnbench.data.__main__ import main as data_cli
from rnnbench.data.espeak import ESpeak

SIZES = {"train_size": 30, "validation_size": 10, "test_size": 10}
SEED = 0


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("phrases_cache")


@pytest.fixture(scope="module")
def by_voices(cache):
    return load("synth_phrases", seed=SEED, cache_dir=cache, **SIZES)


@pytest.fixture(scope="module")
def by_phrasings(cache):
    return load("synth_phrases", seed=SEED, cache_dir=cache, split="phrasings", **SIZES)


def _audio_bytes(split: Split) -> bytes:
    return b"".join(a.tobytes() for a in split.audio)


# ----------------------------------------------------------------------------- the grammar


def test_say_number():
    assert [phrases.say_number(n) for n in (0, 7, 13, 20, 25, 40, 99)] == [
        "zero",
        "seven",
        "thirteen",
        "twenty",
        "twenty five",
        "forty",
        "ninety nine",
    ]
    with pytest.raises(ValueError, match="100"):
        phrases.say_number(100)


def test_grammar_covers_schema_and_inverts():
    texts = collections.defaultdict(list)
    used = collections.defaultdict(set)
    for text, m in phrases.all_utterances():
        texts[text].append(m)
        for name, value in m["slots"].items():
            used[m["intent"], name].add(value)
    assert set(phrases.INTENTS) == set(phrases.SCHEMA) and len(phrases.INTENTS) == 10
    slot_names = [name for slots in phrases.SCHEMA.values() for name in slots]
    assert len(slot_names) == len(set(slot_names))  # unique across intents
    # every transcript says exactly one meaning, and parse inverts the grammar
    assert all(len(ms) == 1 for ms in texts.values())
    for text in list(texts)[::97]:
        assert phrases.parse(text) == texts[text][0]
    # every allowed slot value is said by some phrasing; no dead schema entries
    for intent, slots in phrases.SCHEMA.items():
        for name, values in slots.items():
            assert used[intent, name] == set(values), (intent, name)
    vocab = {w for t in texts for w in t.split(" ")}
    assert 200 <= len(vocab) <= 400 and set("".join(texts)) <= set(CTC_ALPHABET)
    assert all(t == t.strip() and "  " not in t for t in texts)


def test_every_meaning_validates_and_has_three_phrasings():
    for intent in phrases.INTENTS:
        ms = phrases.meanings(intent)
        assert ms, intent
        for m in ms:
            phrases.check_meaning(m)
            said = phrases.phrasings(m)
            assert len(said) >= 3 and len(set(said)) == len(said)
    timer = {"intent": "set_timer", "slots": {"number": "25", "unit": "minutes"}}
    assert "set a timer for twenty five minutes" in phrases.phrasings(timer)
    assert "set an eight minute timer" in phrases.phrasings(
        {"intent": "set_timer", "slots": {"number": "8", "unit": "minutes"}}
    )
    assert phrases.parse("turn the kitchen lights off") == {
        "intent": "lights",
        "slots": {"action": "off", "room": "kitchen"},
    }
    assert phrases.parse("what is seven times eight") == {
        "intent": "ask_math",
        "slots": {"a": "7", "op": "multiply", "b": "8"},
    }
    assert phrases.parse("wake me up at quarter to one in the morning") == {
        "intent": "set_alarm",
        "slots": {"hour": "12", "minute": "45", "period": "morning"},
    }


@pytest.mark.parametrize(
    "meaning, pattern",
    [
        (
            {"intent": "set_timer", "slots": {"number": "26", "unit": "minutes"}},
            r"set_timer\.number = '26' is outside the schema",
        ),
        (
            {"intent": "lights", "slots": {"action": "on", "room": "garden"}},
            r"lights\.room = 'garden'",
        ),
        ({"intent": "fly", "slots": {}}, r"unknown intent 'fly'"),
        ({"intent": "call", "slots": {}}, r"intent 'call' has slots \['contact'\]"),
        ({"intent": "call", "slots": {"contact": "bob", "when": "now"}}, r"'when'"),
        ({"intent": "cancel"}, r"keys 'intent' and 'slots'"),
        ("cancel", r"keys 'intent' and 'slots'"),
        ({"intent": "volume", "slots": {"direction": "up", "level": "5"}}, r"no phrasing says it"),
        ({"intent": "play_music", "slots": {"genre": "none", "artist": "none"}}, r"no phrasing"),
    ],
)
def test_check_meaning_rejects(meaning, pattern):
    with pytest.raises(ValueError, match=pattern):
        phrases.check_meaning(meaning)


def test_parse_and_meanings_reject_unknown():
    with pytest.raises(ValueError, match="'open the door'"):
        phrases.parse("open the door")
    with pytest.raises(ValueError, match="unknown intent 'fly'"):
        phrases.meanings("fly")


def test_split_phrasings_partitions_each_meaning():
    m = {"intent": "weather", "slots": {"city": "paris", "day": "tomorrow"}}
    said = phrases.phrasings(m)
    parts = phrases.split_phrasings(said, seed=3)
    assert len(parts["test"]) == len(parts["validation"]) == 1
    assert sorted(t for part in parts.values() for t in part) == sorted(said)
    assert parts == phrases.split_phrasings(list(reversed(said)), seed=3)  # order-free
    assert any(phrases.split_phrasings(said, seed=s)["test"] != parts["test"] for s in range(4, 9))
    with pytest.raises(ValueError, match=">= 3 phrasings"):
        phrases.split_phrasings(["stop", "cancel"], seed=0)


def test_phrasings_split_never_says_a_test_transcript_in_training():
    # the sampler alone (no audio): many utterances per split
    def said(split, n):
        return [
            phrases.sample_utterance(1, split, i, phrases.INTENTS[i % 10], "phrasings")
            for i in range(n)
        ]

    train, val, test = said("train", 3000), said("validation", 600), said("test", 600)
    train_texts = {t for t, _ in train}
    assert not train_texts & {t for t, _ in test} and not train_texts & {t for t, _ in val}
    assert not {t for t, _ in val} & {t for t, _ in test}
    # yet the test intents and slot values are all heard in training
    heard = {(m["intent"], k, v) for _, m in train for k, v in m["slots"].items()}
    assert {(m["intent"], k, v) for _, m in test for k, v in m["slots"].items()} <= heard
    assert {m["intent"] for _, m in test} == set(phrases.INTENTS)
    # the voices split repeats phrasings across splits (same sampler, no restriction)
    v_train = {phrases.sample_utterance(1, "train", i, "cancel")[0] for i in range(200)}
    v_test = {phrases.sample_utterance(1, "test", i, "cancel")[0] for i in range(50)}
    assert v_train & v_test


# ----------------------------------------------------------------------------- the corpus


def test_synth_phrases_structure(by_voices):
    ds = by_voices
    assert ds.name == "synth_phrases" and ds.task == "ctc" and ds.classes == CTC_ALPHABET
    for s, n in (("train", 30), ("validation", 10), ("test", 10)):
        sp = ds.splits[s]
        assert sp.labels is None
        assert len(sp.audio) == len(sp.transcripts) == len(sp.meanings) == len(sp.speakers) == n
        counts = collections.Counter(m["intent"] for m in sp.meanings)
        assert sorted(counts.values()) == sorted([n // 10 + (k < n % 10) for k in range(10)])
        for a, t, m in zip(sp.audio, sp.transcripts, sp.meanings, strict=True):
            phrases.check_meaning(m)
            assert t in phrases.phrasings(m) and phrases.parse(t) == m
            assert a.dtype == np.int16 and 1.0 <= a.shape[0] / 16000 <= 6.0
            assert ds.decode(ds.encode(t)) == t
            # speech, not silence: the loudest 50 ms is well above the padding noise
            frames = a[: a.shape[0] // 800 * 800].astype(np.float64).reshape(-1, 800)
            rms = np.sqrt(np.mean(frames**2, axis=1))
            assert rms.max() > 3 * rms[0]


def test_synth_phrases_voices_disjoint(by_voices, by_phrasings):
    part = synth.voice_partition(ESpeak().variants, seed=SEED)
    for ds in (by_voices, by_phrasings):
        voices = {s: set(sp.speakers) for s, sp in ds.splits.items()}
        assert not voices["train"] & voices["test"]
        assert not voices["train"] & voices["validation"]
        assert not voices["validation"] & voices["test"]
        assert all(voices[s] <= set(part[s]) for s in voices)


def test_synth_phrases_phrasings_split(by_phrasings):
    sp = by_phrasings.splits
    train = set(sp["train"].transcripts)
    assert not train & set(sp["test"].transcripts)
    assert not train & set(sp["validation"].transcripts)
    for s in ("train", "validation", "test"):
        for t, m in zip(sp[s].transcripts, sp[s].meanings, strict=True):
            assert t in phrases.split_phrasings(phrases.phrasings(m), SEED)[s]


def test_synth_phrases_deterministic_and_cached(by_voices, by_phrasings, cache):
    files = sorted(f for f in os.listdir(cache) if f.startswith("synth_phrases-"))
    assert len(files) == 2 and all(
        re.fullmatch(r"synth_phrases-[0-9a-f]{12}\.npz", f) for f in files
    )
    mtimes = {f: os.path.getmtime(cache / f) for f in files}
    fresh = phrases.synth_phrases(seed=SEED, use_cache=False, num_workers=1, **SIZES)
    cached = load("synth_phrases", seed=SEED, cache_dir=cache, **SIZES)
    assert {f: os.path.getmtime(cache / f) for f in files} == mtimes  # read, not rebuilt
    for s in ("train", "validation", "test"):
        for other in (fresh, cached):
            assert _audio_bytes(other.splits[s]) == _audio_bytes(by_voices.splits[s])
            assert [a.shape for a in other.splits[s].audio] == [
                a.shape for a in by_voices.splits[s].audio
            ]
            assert other.splits[s].transcripts == by_voices.splits[s].transcripts
            assert other.splits[s].meanings == by_voices.splits[s].meanings
            assert other.splits[s].speakers == by_voices.splits[s].speakers
    # the two split kinds are two specs (two files above) with the same voices and meanings
    assert by_phrasings.splits["test"].transcripts != by_voices.splits["test"].transcripts
    assert by_phrasings.splits["test"].meanings == by_voices.splits["test"].meanings
    assert by_phrasings.splits["test"].speakers == by_voices.splits["test"].speakers


def test_long_speech_is_rendered_faster_to_fit():
    es = ESpeak()
    text = max((t for t, _ in phrases.all_utterances()), key=len)
    slow = "Marco" if "Marco" in es.variants else es.variants[0]
    free = synth.render_speech(es, np.random.default_rng(0), text, slow)
    fitted = synth.render_speech(es, np.random.default_rng(0), text, slow, max_seconds=2.0)
    assert free.shape[0] > 2.0 * 16000 >= fitted.shape[0] > 1.0 * 16000
    clips = [phrases._phrase_clip(es, 0, 0, i, text, slow) for i in range(4)]
    assert all(1.0 * 16000 <= c.shape[0] <= 6.0 * 16000 for c in clips)


def test_split_keeps_positional_constructor():
    sp = Split([np.zeros(3, np.int16)], None, ["a"], ["s"])
    assert sp.meanings is None and len(sp) == 1


def test_synth_phrases_rejects_bad_options(cache):
    with pytest.raises(ValueError, match="split must be one of.*'words'"):
        load("synth_phrases", cache_dir=cache, split="words")
    with pytest.raises(ValueError, match="test_size"):
        load("synth_phrases", cache_dir=cache, test_size=-2)


def test_describe_counts_intents(by_voices, cache, capsys):
    args = ["describe", "synth_phrases", "--cache_dir", str(cache), "--seed", str(SEED)]
    args += [f"--{k}={v}" for k, v in SIZES.items()]
    assert data_cli([*args, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for s, sp in by_voices.splits.items():
        assert info["splits"][s]["per_intent"] == dict(
            collections.Counter(m["intent"] for m in sp.meanings)
        )
        assert sum(info["splits"][s]["per_class"].values()) == sum(
            len(t.split()) for t in sp.transcripts
        )
    assert data_cli(args) == 0
    assert "intents: add_item: 3, ask_math: 3" in capsys.readouterr().out
