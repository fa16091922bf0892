"""eSpeak NG wrapper and the synthetic corpora (small sizes; caches under tmp_path)."""

import os
import re

import numpy as np
import pytest

from rnnbench.data import CTC_ALPHABET, DIGIT_WORDS, load, synth
from rnnbench.data import espeak as espeak_mod

SIZES = {"train_size": 48, "validation_size": 24, "test_size": 24}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("synth_cache")


@pytest.fixture(scope="module")
def commands(cache):
    return load("synth_commands", protocol=12, seed=3, cache_dir=cache, **SIZES)


def test_espeak_renders_int16_speech():
    es = espeak_mod.ESpeak()
    assert es.sample_rate == 22050
    assert len(es.variants) > 50 and "m3" in es.variants
    x = es.synth("seven", voice="en-us+f2", rate=160, pitch=60)
    assert x.dtype == np.int16 and 0.2 * 22050 < x.shape[0] < 1.5 * 22050
    assert np.abs(x.astype(np.int32)).max() > 1000
    # repeat calls differ only slightly (eSpeak keeps flutter state; see espeak.py), voices differ
    y = es.synth("seven", voice="en-us+f2", rate=160, pitch=60)
    assert abs(y.shape[0] - x.shape[0]) < 0.02 * x.shape[0]
    other_voice = es.synth("seven", voice="en-us+m3", rate=160, pitch=60)
    assert not np.array_equal(x[:5000], other_voice[:5000])
    assert es.synth("seven seven", voice="en-us+f2", rate=160).shape[0] > 1.5 * x.shape[0]


def test_espeak_rejects_unknown_voice():
    with pytest.raises(espeak_mod.ESpeakError, match="no-such-voice"):
        espeak_mod.ESpeak().synth("yes", voice="no-such-voice")


def test_espeak_clear_error_when_library_missing(monkeypatch):
    import espeakng_loader

    saved = dict(espeak_mod._state)
    monkeypatch.setattr(espeak_mod, "_state", {})
    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: "/nonexistent/libespeak-ng.so")
    with pytest.raises(espeak_mod.ESpeakError, match="cannot load libespeak-ng"):
        espeak_mod.ESpeak()
    assert saved  # the real library state is restored by monkeypatch afterwards


def test_synth_commands_12_structure(commands):
    assert commands.task == "classify"
    assert commands.classes == [
        "_silence_",
        "_unknown_",
        "yes",
        "no",
        "up",
        "down",
        "left",
        "right",
        "on",
        "off",
        "stop",
        "go",
    ]
    for name, n in (("train", 48), ("validation", 24), ("test", 24)):
        sp = commands.splits[name]
        assert len(sp.audio) == n == len(sp.labels) == len(sp.speakers)
        assert sp.transcripts is None and sp.labels.dtype == np.int32
        # exactly balanced classes, 1-second int16 clips
        assert np.bincount(sp.labels, minlength=12).tolist() == [n // 12] * 12
        assert all(a.dtype == np.int16 and a.shape == (16000,) for a in sp.audio)
    # silence clips are quieter than speech clips
    tr = commands.splits["train"]
    rms = np.array([np.sqrt(np.mean(a.astype(np.float64) ** 2)) for a in tr.audio])
    assert rms[tr.labels == 0].max() < np.median(rms[tr.labels >= 2])


def test_synth_voices_disjoint_across_splits(commands):
    voices = {s: set(sp.speakers) for s, sp in commands.splits.items()}
    assert not voices["train"] & voices["test"]
    assert not voices["train"] & voices["validation"]
    assert not voices["validation"] & voices["test"]
    part = synth.voice_partition(espeak_mod.ESpeak().variants, seed=3)
    for s, heard in voices.items():
        assert heard <= set(part[s])


def test_synth_commands_deterministic_and_cached(commands, cache):
    files = [f for f in os.listdir(cache) if f.startswith("synth_commands-")]
    assert len(files) == 1 and re.fullmatch(r"synth_commands-[0-9a-f]{12}\.npz", files[0])
    fresh = synth.synth_commands(protocol=12, seed=3, use_cache=False, **SIZES)  # rebuilt
    cached = load("synth_commands", protocol=12, seed=3, cache_dir=cache, **SIZES)  # from cache
    for s in ("train", "validation", "test"):
        for other in (fresh, cached):
            assert b"".join(a.tobytes() for a in commands.splits[s].audio) == b"".join(
                a.tobytes() for a in other.splits[s].audio
            )
            assert np.array_equal(commands.splits[s].labels, other.splits[s].labels)
            assert commands.splits[s].speakers == other.splits[s].speakers
    assert not any(f.endswith(".tmp") or ".tmp." in f for f in os.listdir(cache))


def test_synth_spec_change_rebuilds(cache):
    before = {f for f in os.listdir(cache) if f.startswith("synth_commands-")}
    other_seed = synth.synth_commands(protocol=12, seed=4, cache_dir=cache, **SIZES)
    after = {f for f in os.listdir(cache) if f.startswith("synth_commands-")}
    assert len(after - before) == 1  # a new spec -> a new cache file, the old one kept
    same = load("synth_commands", protocol=12, seed=3, cache_dir=cache, **SIZES)
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(other_seed.splits["train"].audio, same.splits["train"].audio)
    )


def test_synth_commands_35(cache):
    ds = load(
        "synth_commands",
        protocol=35,
        seed=0,
        cache_dir=cache,
        train_size=35,
        validation_size=0,
        test_size=0,
    )
    assert len(ds.classes) == 35 and "marvin" in ds.classes and "_unknown_" not in ds.classes
    assert sorted(ds.splits["train"].labels.tolist()) == list(range(35))
    assert len(ds.splits["test"].audio) == 0


def test_synth_digits(cache):
    sizes = {"train_size": 10, "validation_size": 5, "test_size": 5}
    ds = load("synth_digits", seed=1, cache_dir=cache, **sizes)
    again = synth.synth_digits(seed=1, use_cache=False, **sizes)
    assert ds.task == "ctc" and ds.classes == CTC_ALPHABET
    vocab = set(DIGIT_WORDS) | {"oh"}
    for s, sp in ds.splits.items():
        assert sp.labels is None and len(sp.transcripts) == len(sp.audio) == len(sp.speakers)
        assert sp.transcripts == again.splits[s].transcripts
        for a, b in zip(sp.audio, again.splits[s].audio):
            assert np.array_equal(a, b)
        for t, a in zip(sp.transcripts, sp.audio):
            words = t.split(" ")
            assert 1 <= len(words) <= 7 and set(words) <= vocab
            assert a.dtype == np.int16 and a.shape[0] > 0.2 * 16000 * 1 + 0.1 * 16000 * len(words)
            ids = ds.encode(t)
            assert ids.min() >= 1 and ids.max() <= len(ds.classes) and ds.decode(ids) == t
    sets = [set(sp.speakers) for sp in ds.splits.values()]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])


def test_load_rejects_bad_arguments(cache):
    with pytest.raises(ValueError, match="synth_commands.*fsdd_digits"):
        load("no_such_dataset")
    with pytest.raises(ValueError, match="protocol"):
        load("synth_commands", protocol=20, cache_dir=cache)
    with pytest.raises(ValueError, match="train_size"):
        load("synth_commands", cache_dir=cache, train_size=-1)
