"""Speech Commands directory loader on tiny generated fixtures, and the WAV reading policy."""

import math
import os
import warnings

import numpy as np
import pytest
import soundfile as sf

from rnnbench.data import load
from rnnbench.data.audio import AudioError, read_wav
from rnnbench.data.speech_commands import CLASSES_12

# word -> speakers per split; two takes per speaker
WORDS = ["yes", "no", "up", "go", "cat", "dog", "marvin"]
SPEAKERS = {"train": ["aa11", "bb22"], "validation": ["cc33"], "test": ["dd44"]}


def _tone(freq, n=4000, sr=16000):
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def make_speech_commands(root, *, absent=0, background=True):
    """Write a tiny Speech Commands layout; ``absent`` extra list entries have no file."""
    os.makedirs(root, exist_ok=True)
    lists = {"validation": [], "test": []}
    for wi, w in enumerate(WORDS):
        os.makedirs(os.path.join(root, w), exist_ok=True)
        for split, speakers in SPEAKERS.items():
            for sp in speakers:
                for take in range(2):
                    rel = f"{w}/{sp}_nohash_{take}.wav"
                    sf.write(os.path.join(root, rel), _tone(200 + 50 * wi), 16000, subtype="PCM_16")
                    if split != "train":
                        lists[split].append(rel)
    for k in range(absent):
        lists["test" if k % 2 else "validation"].append(f"yes/zz{k:02d}_nohash_0.wav")
    with open(os.path.join(root, "validation_list.txt"), "w") as f:
        f.write("\n".join(lists["validation"]) + "\n")
    with open(os.path.join(root, "testing_list.txt"), "w") as f:
        f.write("\n".join(lists["test"]) + "\n")
    if background:
        os.makedirs(os.path.join(root, "_background_noise_"))
        rng = np.random.default_rng(0)
        for name in ("white_noise.wav", "pink_noise.wav"):
            sf.write(
                os.path.join(root, "_background_noise_", name),
                (0.5 * rng.uniform(-1, 1, 2 * 16000)).astype(np.float32),
                16000,
            )
    return str(root)


@pytest.fixture
def sc_dir(tmp_path):
    return make_speech_commands(tmp_path / "sc")


def test_protocol_12_official_recipe(sc_dir):
    ds = load("speech_commands", data_dir=sc_dir, protocol=12, seed=0)
    assert ds.classes == CLASSES_12 and ds.task == "classify"
    n_known_words = sum(w in CLASSES_12 for w in WORDS)  # yes, no, up, go
    n_unknown_words = len(WORDS) - n_known_words
    for split, speakers in SPEAKERS.items():
        sp = ds.splits[split]
        n_known = n_known_words * len(speakers) * 2
        counts = np.bincount(sp.labels, minlength=12)
        assert counts[2:].sum() == n_known
        assert counts[1] == min(n_unknown_words * len(speakers) * 2, math.ceil(n_known * 0.1))
        assert counts[0] == math.ceil(n_known * 0.1)
        # official split membership: real clips come from that split's speakers only
        real = [s for s, l in zip(sp.speakers, sp.labels) if l != 0]
        assert set(real) == set(speakers)
        sil = [a for a, l in zip(sp.audio, sp.labels) if l == 0]
        assert all(a.shape == (16000,) and a.dtype == np.int16 for a in sil)
        assert max(np.abs(a.astype(np.int32)).max() for a in sil) > 0
        # labels name the right words (each word has its own tone frequency)
        for a, l in zip(sp.audio, sp.labels):
            if l >= 2:
                f0 = np.argmax(np.abs(np.fft.rfft(a.astype(np.float64)))) * 16000 / a.shape[0]
                assert abs(f0 - (200 + 50 * WORDS.index(ds.classes[l]))) < 10


def test_protocol_12_deterministic_and_seeded(sc_dir):
    a = load("speech_commands", data_dir=sc_dir, seed=0)
    b = load("speech_commands", data_dir=sc_dir, seed=0)
    c = load("speech_commands", data_dir=sc_dir, seed=1)
    sil = lambda ds: [
        x for x, l in zip(ds.splits["train"].audio, ds.splits["train"].labels) if l == 0
    ]
    assert all(np.array_equal(x, y) for x, y in zip(sil(a), sil(b)))
    assert not all(np.array_equal(x, y) for x, y in zip(sil(a), sil(c)))


def test_protocol_35_uses_all_words(sc_dir):
    ds = load("speech_commands", data_dir=sc_dir, protocol=35)
    assert ds.classes == sorted(WORDS)
    assert len(ds.splits["train"].audio) == len(WORDS) * 2 * 2
    assert np.bincount(ds.splits["test"].labels).tolist() == [2] * len(WORDS)


def test_partial_copy_warns_once_with_count(tmp_path):
    root = make_speech_commands(tmp_path / "sc", absent=5)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = load("speech_commands", data_dir=root, protocol=35)
    msgs = [str(w.message) for w in rec if "absent" in str(w.message)]
    assert len(msgs) == 1 and msgs[0].startswith("speech_commands: 5 file(s)")
    assert len(ds.splits["validation"].audio) == len(WORDS) * 2


def test_bad_layouts_explain_expected_layout(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="validation_list.txt"):
        load("speech_commands", data_dir=str(empty))
    (empty / "validation_list.txt").write_text("")
    (empty / "testing_list.txt").write_text("")
    with pytest.raises(ValueError, match="no word folders"):
        load("speech_commands", data_dir=str(empty))
    with pytest.raises(ValueError, match="not a directory"):
        load("speech_commands", data_dir=str(tmp_path / "missing"))
    no_bg = make_speech_commands(tmp_path / "nobg", background=False)
    with pytest.raises(ValueError, match="_background_noise_"):
        load("speech_commands", data_dir=no_bg, protocol=12)
    assert len(load("speech_commands", data_dir=no_bg, protocol=35).classes) == len(WORDS)


def test_corrupt_wav_in_dataset_names_file_or_is_skipped_with_count(sc_dir):
    bad = os.path.join(sc_dir, "yes", "ee55_nohash_0.wav")
    with open(bad, "wb") as f:
        f.write(b"RIFF\x00\x01garbage-not-a-wav" * 3)
    with pytest.raises(AudioError, match="ee55_nohash_0.wav"):
        load("speech_commands", data_dir=sc_dir, protocol=35)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = load("speech_commands", data_dir=sc_dir, protocol=35, on_error="skip")
    assert len(ds.splits["train"].audio) == len(WORDS) * 2 * 2
    assert len(ds.splits["train"].labels) == len(ds.splits["train"].speakers) == len(WORDS) * 4


# --- WAV policy: corrupt / empty -> error naming the file; stereo -> mean; 24-bit ok; 8 kHz -> 16 kHz


def test_read_wav_corrupt_and_empty(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"\x00\x01\x02 definitely not audio")
    with pytest.raises(AudioError, match="corrupt.wav"):
        read_wav(corrupt)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.int16), 16000)
    with pytest.raises(AudioError, match="empty.wav.*empty"):
        read_wav(empty)
    zero_bytes = tmp_path / "zero_bytes.wav"
    zero_bytes.write_bytes(b"")
    with pytest.raises(AudioError, match="zero_bytes.wav"):
        read_wav(zero_bytes)
    assert issubclass(AudioError, ValueError)


def test_read_wav_stereo_24bit_and_resampling(tmp_path):
    rng = np.random.default_rng(0)
    left, right = (rng.integers(-8000, 8000, 1600).astype(np.int16) for _ in range(2))
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], 1), 16000, subtype="PCM_16")
    mono = read_wav(tmp_path / "stereo.wav")
    expected = (left.astype(np.float64) + right) / 2
    assert mono.dtype == np.int16 and mono.shape == (1600,)
    assert np.abs(mono - expected).max() <= 1.0

    x = 0.5 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)
    sf.write(tmp_path / "pcm24.wav", x, 16000, subtype="PCM_24")
    assert sf.info(tmp_path / "pcm24.wav").subtype == "PCM_24"
    y = read_wav(tmp_path / "pcm24.wav")
    assert y.dtype == np.int16 and np.abs(y / 32768.0 - x).max() < 1e-4

    t8 = np.arange(8000) / 8000
    sf.write(tmp_path / "rate8k.wav", 0.5 * np.sin(2 * np.pi * 300 * t8), 8000, subtype="PCM_16")
    z = read_wav(tmp_path / "rate8k.wav")
    assert z.shape == (16000,)
    ref = 0.5 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)
    assert np.abs(z[500:-500] / 32768.0 - ref[500:-500]).max() < 0.01  # away from filter edges
