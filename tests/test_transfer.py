"""Synthetic-to-real transfer: corpus augmentation (rnnbench/data/augment.py, synth_commands'
augment option), the FSDD / Speech Commands label mappings and the table of experiments/transfer.py.
Corpora are tiny; caches live under tmp_path."""

import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from experiments import transfer
from rnnbench.data import DIGIT_WORDS, SAMPLE_RATE, flite, synth
from rnnbench.data import augment as A

SIZES = {"train_size": 24, "validation_size": 12, "test_size": 12}


def _tone(n=8000, f=1000.0):
    t = np.arange(n) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def _write_wav(path, x):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, np.asarray(x, np.float32), SAMPLE_RATE, subtype="PCM_16")


# ----------------------------------------------------------------------------- augment.py


@pytest.mark.parametrize("fn", [A.speed, A.vtlp, A.reverberate, A.channel])
def test_augmentations_are_pure_functions_of_the_generator(fn):
    x = _tone() + 0.01 * np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    a = fn(np.random.default_rng(5), x)
    b = fn(np.random.default_rng(5), x)
    c = fn(np.random.default_rng(6), x)
    m = min(a.shape[0], c.shape[0], 7000)
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert not np.array_equal(a[:m], c[:m]) and not np.allclose(a[:m], x[:m], atol=1e-3)


def test_speed_scales_duration_by_the_drawn_factor():
    x = _tone(16000)
    y = A.speed(np.random.default_rng(3), x)
    k = np.random.default_rng(3).integers(85, 116)  # the factor's draw, in hundredths
    assert abs(y.shape[0] - 16000 * 100 / k) <= 1


def test_vtlp_moves_a_tone_by_alpha_and_keeps_the_length():
    x = _tone(16000, 1000.0)
    y = A.vtlp(np.random.default_rng(4), x)
    alpha = np.random.default_rng(4).uniform(*A.VTLP_RANGE)
    spec = np.abs(np.fft.rfft(y[2000:14000] * np.hanning(12000)))
    peak_hz = np.argmax(spec) * SAMPLE_RATE / 12000
    assert y.shape == x.shape and abs(alpha - 1) > 0.01
    assert abs(peak_hz - 1000 * alpha) < 20, (peak_hz, alpha)
    # the warp fixes 0 Hz and the Nyquist frequency and is monotone
    f = np.linspace(0, 8000, 257)
    w = A.vtlp_map(f, 1.1)
    assert w[0] == 0 and abs(w[-1] - 8000) < 1e-9 and np.all(np.diff(w) > 0)
    assert np.allclose(A.vtlp_map(f, 1.0), f)


def test_bandwidth_empties_the_band_above_the_recording_rate():
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    f = np.fft.rfftfreq(16000, 1 / SAMPLE_RATE)
    rates = set()
    for s in range(8):
        y = A.bandwidth(np.random.default_rng(s), x)
        assert y.shape == x.shape and np.array_equal(y, A.bandwidth(np.random.default_rng(s), x))
        top = A.NARROW_RATES[np.random.default_rng(s).integers(2)] / 2
        rates.add(top)
        power, before = np.abs(np.fft.rfft(y)) ** 2, np.abs(np.fft.rfft(x)) ** 2
        assert power[f > top + 200].sum() < 1e-4 * power.sum()  # an empty band
        assert power[f < top - 500].sum() > 0.99 * before[f < top - 500].sum()
    assert rates == {4000, 6000}


def test_trim_cuts_the_word_out_with_a_margin_of_its_own_noise():
    """The word's samples survive whole; the margins are within TRIM_MARGIN_S and within x."""
    x = np.arange(16000, dtype=np.float32)
    lo, hi = (round(m * SAMPLE_RATE) for m in A.TRIM_MARGIN_S)
    for seed in range(20):
        y = A.trim(np.random.default_rng(seed), x, 5000, 9000)
        before, after = 5000 - int(y[0]), int(y[-1]) + 1 - 9000
        assert lo <= before <= hi and lo <= after <= hi
        assert np.array_equal(y, x[5000 - before : 9000 + after])
    edge = A.trim(np.random.default_rng(0), x, 0, 16000)  # a word filling the clip: all of it
    assert np.array_equal(edge, x)


def test_each_option_is_chosen_with_probability_prob():
    picks = [A.chosen(np.random.default_rng(s), ("rir", "speed")) for s in range(400)]
    assert all(set(p) <= {"rir", "speed"} for p in picks)
    assert all(list(p) == sorted(p, key=A.OPTIONS.index) for p in picks)
    share = np.mean([["rir" in p, "speed" in p] for p in picks], axis=0)
    assert np.all(np.abs(share - A.PROB) < 0.08) and () in picks and ("speed", "rir") in picks
    # an option's own probability: always, or a fifth of the clips; the others' draws unchanged
    always = [A.chosen(np.random.default_rng(s), ("rir", "speed:1")) for s in range(400)]
    assert all("speed" in p for p in always)
    assert [("rir" in p) for p in always] == [("rir" in p) for p in picks]
    rare = [A.chosen(np.random.default_rng(s), ("speed:0.2",)) for s in range(400)]
    assert abs(np.mean([p == ("speed",) for p in rare]) - 0.2) < 0.06


def test_room_impulse_response_decays_and_keeps_the_peak():
    h = A.room_impulse_response(np.random.default_rng(0))
    assert h[0] == 1.0 and h.shape[0] >= 0.1 * SAMPLE_RATE - 1
    tail = h[len(h) // 2 :]
    early = h[int(0.01 * SAMPLE_RATE) : int(0.01 * SAMPLE_RATE) + len(tail)]
    assert np.sqrt(np.mean(tail**2)) < 0.5 * np.sqrt(np.mean(early**2))
    x = _tone()
    y = A.reverberate(np.random.default_rng(0), x)
    assert y.shape[0] == x.shape[0] + h.shape[0] - 1
    assert np.isclose(np.abs(y).max(), np.abs(x).max(), rtol=1e-5)


def test_butterworth_sections_match_scipy():
    import scipy.signal

    for kind, f0, order in (("lowpass", 3800.0, 6), ("highpass", 120.0, 2)):
        mine = np.concatenate(A._butterworth(kind, f0, order))
        ref = scipy.signal.butter(order, f0, kind, fs=SAMPLE_RATE, output="sos")
        h1 = scipy.signal.sosfreqz(mine, fs=SAMPLE_RATE)[1]
        h2 = scipy.signal.sosfreqz(ref, fs=SAMPLE_RATE)[1]
        np.testing.assert_allclose(np.abs(h1), np.abs(h2), atol=1e-9)


def test_background_noise_kinds_and_recordings():
    bank = (np.linspace(-0.5, 0.5, 20000, dtype=np.float32),)
    kinds = []
    for s in range(30):
        x = A.background(np.random.default_rng(s), 16000, bank=bank)
        assert x.shape == (16000,) and np.isclose(np.sqrt(np.mean(x**2)), 1.0, rtol=1e-3)
        kind = ["coloured", "modulated", "recorded"][np.random.default_rng(s).integers(3)]
        ramp = np.diff(x)  # a recording's segment is a piece of the ramp: constant steps
        assert np.allclose(ramp, ramp[0], rtol=1e-2) == (kind == "recorded"), (s, kind)
        kinds.append(kind)
    assert set(kinds) == {"coloured", "modulated", "recorded"}


def test_check_options_canonical_and_errors(tmp_path):
    assert A.check_options("speed, rir") == A.check_options(["rir", "speed"]) == ("rir", "speed")
    assert A.check_options(()) == A.check_options("") == A.check_options(None) == ()
    with pytest.raises(ValueError, match="unknown augment option.*'reverb'"):
        A.check_options("reverb")
    assert A.check_options("speed:0.5,flite:1, rir:0.25") == ("flite:1", "rir:0.25", "speed")
    assert A.probabilities(("flite:1", "speed")) == {"flite": 1.0, "speed": A.PROB}
    for bad in ("speed:0", "speed:1.5", "speed:fast", "speed:"):
        with pytest.raises(ValueError, match=f"'{bad}'.*a number in \\(0, 1\\]"):
            A.check_options(bad)
    with pytest.raises(ValueError, match="'speed' given twice"):
        A.check_options("speed:1,speed:0.3")
    with pytest.raises(ValueError, match="noise_dir.*add 'noise'"):
        A.check_options("rir", noise_dir=str(tmp_path))
    with pytest.raises(ValueError, match="holds no .wav"):
        A.noise_files(str(tmp_path))


class _FakeESpeak:
    """Records the voice of every call; says a 0.3 s tone whose pitch follows the text."""

    sample_rate = 22050

    def __init__(self):
        self.variants_used = []

    def synth(self, text, *, voice, **kwargs):
        self.variants_used.append(voice.split("+")[1])
        t = np.arange(int(0.3 * self.sample_rate)) / self.sample_rate
        f0 = 150 + sum(map(ord, text)) % 100
        return (8000 * np.sin(2 * np.pi * f0 * t)).astype(np.int16)


def test_babble_talkers_come_from_the_clip_split_voices():
    es = _FakeESpeak()
    for i in range(60):
        clip = synth._command_clip(
            es, 0, 0, i, "yes", synth.CLASSES_12, "m1", ("noise",), ("m1", "f2", "klatt"), None
        )
        assert clip.dtype == np.int16 and clip.shape == (SAMPLE_RATE,)
    assert len(es.variants_used) > 60  # babble rendered extra talkers
    assert set(es.variants_used) <= {"m1", "f2", "klatt"} and len(set(es.variants_used)) > 1


# ----------------------------------------------------------------------------- the corpus


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bg")
    rng = np.random.default_rng(0)
    _write_wav(str(d / "hum.wav"), 0.1 * np.sin(np.arange(24000) * 0.02))
    _write_wav(str(d / "hiss.wav"), 0.05 * rng.standard_normal(20000))
    return str(d)


def _bytes(ds):
    return {s: b"".join(a.tobytes() for a in sp.audio) for s, sp in ds.splits.items()}


@pytest.mark.parametrize("option", A.OPTIONS)
def test_each_option_changes_clips_deterministically(option, noise_dir):
    """Clip i of a split is a pure function of (seed, split, i, options): rendered twice with a
    deterministic stand-in for eSpeak, the same options give the same bytes, and each option
    gives other bytes than no option, for a word and for a silence clip."""
    voices = ("m1", "f2")

    i = next(  # a clip that gets the option (each has probability PROB)
        i for i in range(20) if np.random.default_rng([4, 0, i, A.AUGMENT_STREAM]).random() < A.PROB
    )

    def clip(cls, augment, nd=None):
        return synth._command_clip(
            _FakeESpeak(), 4, 0, i, cls, synth.CLASSES_12, "m1", augment, voices, nd
        )

    if option == "flite" and shutil.which("flite") is None:
        pytest.skip("the flite program is absent (apt install flite)")
    for cls in ("yes", "_silence_"):
        speech_only = ("flite", "intonation", "speed", "vtlp", "rir", "trim")
        if cls == "_silence_" and option in speech_only:
            assert np.array_equal(clip(cls, (option,)), clip(cls, ()))  # speech-only options
            continue
        a, b = clip(cls, (option,)), clip(cls, (option,))
        assert a.dtype == np.int16 and np.array_equal(a, b)
        assert a.shape[0] < SAMPLE_RATE if option == "trim" else a.shape == (SAMPLE_RATE,)
        assert not np.array_equal(a, clip(cls, ()))
    assert np.array_equal(clip("no", ()), clip("no", ()))
    if option == "noise":  # recorded noise from noise_dir is part of the draw
        assert np.array_equal(clip("no", ("noise",), noise_dir), clip("no", ("noise",), noise_dir))


needs_flite = pytest.mark.skipif(
    shutil.which("flite") is None, reason="the flite program is absent (apt install flite)"
)


@needs_flite
def test_flite_speaks_deterministically_at_16khz_and_stretches():
    for voice in flite.VOICES:
        a = flite.synth("seven", voice)
        assert a.dtype == np.float32 and 0.3 * SAMPLE_RATE < a.shape[0] < 2 * SAMPLE_RATE
        assert np.array_equal(a, flite.synth("seven", voice)) and np.abs(a).max() > 0.05
    slow = flite.synth("seven", "slt", 1.3).shape[0]
    assert slow > 1.2 * flite.synth("seven", "slt", 1.0).shape[0]
    assert "flite" in flite.version()
    with pytest.raises(ValueError, match="flite voice must be one of"):
        flite.synth("seven", "m3")


def test_flite_missing_program_says_how_to_install(monkeypatch):
    monkeypatch.setattr(flite.shutil, "which", lambda name: None)
    with pytest.raises(flite.FliteMissing, match="'flite' augment option needs the flite program"):
        flite.synth("seven", "slt")


@needs_flite
def test_flite_clips_name_their_voice_and_leave_the_other_splits_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "BLOCK", SIZES["train_size"])  # eSpeak's history: as at full size
    opts = dict(protocol=12, seed=3, cache_dir=tmp_path, **SIZES)
    base = synth.synth_commands(**opts)
    ds = synth.synth_commands(augment="flite", **opts)
    train, base_train = ds.splits["train"], base.splits["train"]
    spoken = [i for i, k in enumerate(train.speakers) if k.startswith("flite-")]
    assert spoken and {train.speakers[i][6:] for i in spoken} <= set(flite.VOICES)
    assert all(synth.CLASSES_12[train.labels[i]] != "_silence_" for i in spoken)
    kept = [i for i in range(len(train.speakers)) if i not in spoken]
    assert [train.speakers[i] for i in kept] == [base_train.speakers[i] for i in kept]
    assert all(_bytes(ds)[s] == _bytes(base)[s] for s in ("validation", "test"))


@pytest.mark.slow
def test_augmented_corpus_deterministic_voice_disjoint_and_cached(tmp_path, noise_dir, monkeypatch):
    monkeypatch.setattr(synth, "BLOCK", SIZES["train_size"])  # as 12,000 train clips in 6 blocks
    opts = dict(protocol=12, seed=2, **SIZES)
    aug = ("channel", "noise", "rir", "speed", "vtlp", "intonation")
    base = synth.synth_commands(cache_dir=tmp_path, **opts)
    first = synth.synth_commands(cache_dir=tmp_path, augment=aug, noise_dir=noise_dir, **opts)
    again = synth.synth_commands(
        use_cache=False, augment=",".join(reversed(aug)), noise_dir=noise_dir, **opts
    )
    assert _bytes(first) == _bytes(again)  # same spec -> same bytes (fresh build, any order)
    for s in synth.SPLITS:  # same clips (labels, voices), other audio
        assert np.array_equal(first.splits[s].labels, base.splits[s].labels)
        assert first.splits[s].speakers == base.splits[s].speakers
        assert all(a.shape == (SAMPLE_RATE,) for a in first.splits[s].audio)
    assert _bytes(first)["train"] != _bytes(base)["train"]  # only training clips are augmented
    assert all(_bytes(first)[s] == _bytes(base)[s] for s in ("validation", "test"))
    voices = {s: set(sp.speakers) for s, sp in first.splits.items()}
    assert not (voices["train"] & voices["test"]) and not (voices["train"] & voices["validation"])
    assert len([f for f in os.listdir(tmp_path) if f.startswith("synth_commands-")]) == 2


def test_cache_key_includes_options_and_default_key_unchanged(tmp_path, noise_dir, monkeypatch):
    specs = []

    def no_build(name, spec, cache_dir, use_cache, build):
        specs.append(spec)
        return {}

    monkeypatch.setattr(synth, "cached_splits", no_build)
    for kw in (
        {},
        {"augment": "rir"},
        {"augment": ("speed", "rir")},
        {"augment": ("rir", "speed")},
        {"augment": "noise", "noise_dir": noise_dir},
    ):
        synth.synth_commands(protocol=12, seed=0, **SIZES, **kw)
    assert specs[0] == {
        "name": "synth_commands",
        "recipe": synth.RECIPE_VERSION,
        "block": synth.BLOCK,
        "protocol": 12,
        "seed": 0,
        "train": 24,
        "validation": 12,
        "test": 12,
    }  # as before
    assert specs[1]["augment"] == ["rir"] and specs[1]["augment_version"] == A.VERSION
    assert specs[4]["noise_files"] == A.noise_digest(noise_dir)
    keys = [synth.cache_path("synth_commands", sp, tmp_path) for sp in specs]
    assert len(set(keys)) == 4 and keys[2] == keys[3]  # the order of options does not matter


def test_noise_digest_follows_file_contents(tmp_path):
    _write_wav(str(tmp_path / "a.wav"), np.zeros(16000) + 0.1)
    before = A.noise_digest(str(tmp_path))
    _write_wav(str(tmp_path / "a.wav"), np.zeros(16000) + 0.2)
    assert A.noise_digest(str(tmp_path)) != before


# ----------------------------------------------------------------------------- transfer.py


def test_fsdd_digits_map_to_the_35_command_words():
    targets = transfer.fsdd_targets(np.arange(10), synth.WORDS_35)
    assert [synth.WORDS_35[t] for t in targets] == DIGIT_WORDS
    assert transfer.fsdd_targets([7, 0], synth.WORDS_35).tolist() == [
        synth.WORDS_35.index("seven"),
        synth.WORDS_35.index("zero"),
    ]
    with pytest.raises(ValueError, match="35-word model"):
        transfer.fsdd_targets([1], synth.CLASSES_12)


def test_accuracy_over_all_words_and_over_the_digit_words():
    digits = [synth.WORDS_35.index(w) for w in DIGIT_WORDS]
    logits = np.zeros((3, 35))
    target = transfer.fsdd_targets([3, 3, 5], synth.WORDS_35)
    logits[0, target[0]] = 2.0  # right
    logits[1, synth.WORDS_35.index("marvin")] = 3.0  # a non-digit wins overall ...
    logits[1, target[1]] = 1.0  # ... the right digit among digits
    logits[2, synth.WORDS_35.index("four")] = 1.0  # a wrong digit
    assert transfer.accuracies(logits, target) == (1, 3)
    assert transfer.accuracies(logits, target, digits) == (2, 3)


def test_scores_of_35_and_12_class_models():
    clips = [np.zeros(4000, np.int16)] * 4
    fsdd = {"test": (clips, transfer.fsdd_targets([0, 1, 2, 3], synth.WORDS_35))}

    def logits35(cl):  # says "one" to everything
        out = np.zeros((len(cl), 35))
        out[:, synth.WORDS_35.index("one")] = 1
        return out

    s35 = transfer.score_35(logits35, fsdd, None)
    assert s35["fsdd_test_35"] == {"correct": 1, "total": 4, "accuracy": 0.25}
    assert s35["fsdd_test_digits"]["correct"] == 1 and "sc_test" not in s35

    def logits12(cl):  # says _unknown_ to the first two
        out = np.zeros((len(cl), 12))
        out[:2, 1] = 1
        out[2:, 5] = 1
        return out

    sc = {"test": (clips, np.array([5, 5, 5, 0]))}
    s12 = transfer.score_12(logits12, {"test": (clips, [0, 1, 2, 3])}, sc)
    assert s12["fsdd_test_unknown"]["accuracy"] == 0.5
    assert s12["sc_test"] == {"correct": 1, "total": 4, "accuracy": 0.25}


def test_speech_commands_labels_follow_synth_commands_classes(tmp_path):
    clip = 0.1 * np.sin(np.arange(SAMPLE_RATE) * 0.05)
    files = {
        "yes": ["a_nohash_0", "b_nohash_0"],
        "seven": ["a_nohash_1"],
        "wow": ["c_nohash_0"],
        "dog": ["d_nohash_0"],
        "hello": ["e_nohash_0"],
    }
    for word, names in files.items():
        for n in names:
            _write_wav(str(tmp_path / word / f"{n}.wav"), clip)
    _write_wav(str(tmp_path / "_background_noise_" / "white.wav"), 0.01 * np.ones(20000))
    (tmp_path / "validation_list.txt").write_text("")
    (tmp_path / "testing_list.txt").write_text(
        "yes/a_nohash_0.wav\nseven/a_nohash_1.wav\nwow/c_nohash_0.wav\nhello/e_nohash_0.wav\n"
    )
    p35 = transfer.load_speech_commands(str(tmp_path), 35)["test"]
    assert sorted(synth.WORDS_35[i] for i in p35[1]) == ["seven", "wow", "yes"]  # not "hello"
    assert len(p35[0]) == 3
    p12 = transfer.load_speech_commands(str(tmp_path), 12)["test"]
    names = sorted(synth.CLASSES_12[i] for i in p12[1])
    assert names[-1] == "yes" and set(names) <= {"yes", "_unknown_", "_silence_"}


def _fake_result():
    def pct(c, t):
        return {"correct": c, "total": t, "accuracy": c / t}

    rows = [
        {
            "name": "default",
            "protocol": 35,
            "augment": "",
            "mel_warp": 0.0,
            "synthetic_test": pct(1100, 1200),
            "corpus_s": 61.2,
            "scores": {
                "fsdd_test_35": pct(150, 300),
                "fsdd_test_digits": pct(210, 300),
                "fsdd_all_35": pct(1500, 3000),
                "fsdd_all_digits": pct(2000, 3000),
            },
        },
        {
            "name": "all",
            "protocol": 35,
            "augment": "rir,speed",
            "mel_warp": 0.1,
            "fmax": 4000.0,
            "num_steps": 2400,  # its own; the others: the table's (settings)
            "synthetic_test": pct(1000, 1200),
            "corpus_s": None,
            "scores": {
                "fsdd_test_35": pct(240, 300),
                "fsdd_test_digits": pct(282, 300),
                "fsdd_all_35": pct(2400, 3000),
                "fsdd_all_digits": pct(2800, 3000),
            },
        },
        {
            "name": "default",
            "protocol": 12,
            "augment": "",
            "mel_warp": 0.0,
            "synthetic_test": pct(1140, 1200),
            "corpus_s": 50.0,
            "scores": {"fsdd_test_unknown": pct(270, 300), "fsdd_all_unknown": pct(2700, 3000)},
        },
    ]
    return {
        "command": "python -m experiments.transfer --workdir=runs/t",
        "out": "results/t",
        "provenance_line": "2026-01-01 00:00 UTC; commit abc",
        "rows": rows,
        "reference": {
            "fsdd_test_digits": pct(291, 300),
            "fsdd_test_in_training_eval": pct(290, 300),
        },
        "speech_commands_dir": None,
        "settings": {
            "variant": "gru",
            "hidden": 128,
            "num_steps": 800,
            "batch_size": 64,
            "seed": 0,
            "sizes": "12,000 / 1,200 / 1,200",
            "full_size_command": "python -m experiments.train ...",
        },
    }


def test_table_renders_from_a_result_set():
    md = transfer.render(_fake_result())
    assert "python -m experiments.transfer --workdir=runs/t" in md
    assert "2026-01-01 00:00 UTC; commit abc" in md and "one seed (0) per row" in md
    lines = md.splitlines()
    default35 = next(ln for ln in lines if ln.startswith("| default | — | — | — | 800 | 91.67%"))
    assert "| 70.00% (210/300) | -27.00 | 50.00% | 66.67% | 50.00% | — | 61 |" in default35
    all35 = next(ln for ln in lines if ln.startswith("| all | rir,speed | 0.1 | 0-4 kHz | 2,400 |"))
    assert "| 94.00% (282/300) | -3.00 |" in all35 and all35.endswith("| — |")
    assert any(
        ln.startswith("| **FSDD-trained reference** (real speech) |") and "97.00% (291/300)" in ln
        for ln in lines
    )
    assert "| default | — | — | — | 800 | 95.00% | 90.00% | 90.00% | — | 50 |" in md
    assert "best row `all` is 3.00 points below it: **met**" in md
    assert "Speech Commands: **not measured**" in md
    assert "own evaluation, with other padding, gave 96.67% (290/300)" in md


def test_goals_use_speech_commands_when_present():
    result = _fake_result()
    result["rows"][2]["scores"]["sc_test"] = {"correct": 85, "total": 100, "accuracy": 0.85}
    assert any("best row `default` 85.00%: **not met**" in g for g in transfer.goals(result))


@pytest.mark.slow
def test_transfer_end_to_end_on_tiny_corpora(tmp_path, monkeypatch):
    """Trains the default row (both protocols) and the FSDD reference for a few steps on tiny
    corpora, scores them on the real FSDD recordings and renders the table."""
    fsdd_dir = os.environ.get("RNNBENCH_FSDD_DIR")
    if not fsdd_dir:
        pytest.skip("needs RNNBENCH_FSDD_DIR (real FSDD recordings)")
    from experiments.configs import transfer as tc

    monkeypatch.setenv("RNNBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tc, "SIZES", {"train_size": 70, "validation_size": 35, "test_size": 35})
    rows, reference = transfer.measure(
        [tc.ROWS[0]], "gru", 4, str(tmp_path / "runs"), fsdd_dir, None
    )
    assert [(r["name"], r["protocol"]) for r in rows] == [("default", 35), ("default", 12)]
    s35, s12 = rows[0]["scores"], rows[1]["scores"]
    assert s35["fsdd_test_digits"]["total"] == 300 and s35["fsdd_all_35"]["total"] == 3000
    assert s12["fsdd_all_unknown"]["total"] == 3000
    assert rows[0]["synthetic_test"]["total"] == 35
    assert reference["fsdd_test_digits"]["total"] == 300
    again, _ = transfer.measure([tc.ROWS[0]], "gru", 4, str(tmp_path / "runs"), fsdd_dir, None)
    assert again == rows  # finished runs and their scores are reused
    md = transfer.render(
        {
            "command": "c",
            "out": "o",
            "provenance_line": "p",
            "rows": rows,
            "reference": reference,
            "settings": transfer.settings("gru", 4),
        }
    )
    assert md.count("| default |") == 2 and "**FSDD-trained reference**" in md


def test_jobs_cover_every_row_protocol_and_the_reference():
    from experiments.configs import transfer as tc

    plain = transfer.jobs(tc.ROWS, "gru", None, "w", "/fsdd")
    names = [(j.name, j.protocol) for j in plain]
    assert ("default", 35) in names and ("default", 12) in names and ("speed", 35) in names
    assert not any("sc_noise" in n for n, _ in names)  # needs --speech_commands_dir
    assert names[-1] == ("fsdd_reference", None) and plain[-1].config.data_dir == "/fsdd"
    speed = next(j for j in plain if j.name == "speed")
    assert speed.config.data.options.augment == "speed" and speed.config.data.protocol == 35
    assert speed.workdir == os.path.join("w", "p35", "speed")
    assert speed.config.num_steps == tc.NUM_STEPS and speed.config.model.cell == "gru"
    with_sc = transfer.jobs(tc.ROWS, "lstm", 40, "w", "/fsdd", sc_dir="/sc")
    sc_rows = [j for j in with_sc if j.name == "all+mel_warp+sc_noise"]
    assert [j.protocol for j in sc_rows] == [35, 12]
    assert sc_rows[0].config.data.options.noise_dir == os.path.join("/sc", "_background_noise_")
    assert sc_rows[0].config.spec_augment.mel_warp == 0.1
    assert all(j.config.num_steps == 40 and j.config.optimizer.warmup_steps == 4 for j in with_sc)
