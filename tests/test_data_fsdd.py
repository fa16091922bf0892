"""FSDD loaders: the real copy from $RNNBENCH_FSDD_DIR (skipped if absent) and tiny fixtures."""

import collections
import os
import re

import numpy as np
import pytest
import soundfile as sf

from rnnbench.data import DIGIT_WORDS, load
from rnnbench.data.audio import AudioError, read_wav

FSDD = os.environ.get("RNNBENCH_FSDD_DIR")
needs_fsdd = pytest.mark.skipif(
    not FSDD or not os.path.isdir(os.path.join(FSDD, "recordings")),
    reason="set RNNBENCH_FSDD_DIR to an FSDD copy (with recordings/) to run",
)


def _real_files():
    pat = re.compile(r"^(\d)_(\w+?)_(\d+)\.wav$")
    return [
        pat.match(f).groups() for f in os.listdir(os.path.join(FSDD, "recordings")) if pat.match(f)
    ]


@needs_fsdd
def test_fsdd_official_split_real():
    ds = load("fsdd", data_dir=FSDD)
    files = _real_files()
    expected = collections.Counter(
        "test" if int(t) < 5 else "validation" if int(t) < 10 else "train" for _, _, t in files
    )
    assert ds.classes == DIGIT_WORDS and ds.task == "classify"
    for s, sp in ds.splits.items():
        assert len(sp.audio) == expected[s] == len(sp.labels) == len(sp.speakers)
        assert sp.labels.min() == 0 and sp.labels.max() == 9
        assert all(a.dtype == np.int16 and a.ndim == 1 for a in sp.audio)
    # 8 kHz files are resampled to 16 kHz: lengths are twice the stored frame counts
    path = os.path.join(FSDD, "recordings", "0_jackson_0.wav")
    if os.path.exists(path):
        n8 = sf.info(path).frames
        test = ds.splits["test"]
        lengths = {
            a.shape[0]
            for a, s, l in zip(test.audio, test.speakers, test.labels)
            if s == "jackson" and l == 0
        }
        assert 2 * n8 in lengths


@needs_fsdd
def test_fsdd_speaker_split_real():
    ds = load("fsdd", data_dir=FSDD, split="speakers", seed=0)
    sets = {s: set(sp.speakers) for s, sp in ds.splits.items()}
    assert len(sets["test"]) == 1 and len(sets["validation"]) == 1
    assert not sets["train"] & sets["test"] and not sets["train"] & sets["validation"]
    assert sum(len(sp.audio) for sp in ds.splits.values()) == len(_real_files())
    chosen = load(
        "fsdd",
        data_dir=FSDD,
        split="speakers",
        test_speakers=["theo"],
        validation_speakers=["lucas"],
    )
    assert set(chosen.splits["test"].speakers) == {"theo"}
    with pytest.raises(ValueError, match="disjoint members"):
        load(
            "fsdd",
            data_dir=FSDD,
            split="speakers",
            test_speakers=["nobody"],
            validation_speakers=["theo"],
        )


@needs_fsdd
def test_fsdd_digits_real_deterministic():
    kw = {"data_dir": FSDD, "seed": 5, "train_size": 6, "validation_size": 4, "test_size": 4}
    a, b = load("fsdd_digits", **kw), load("fsdd_digits", **kw)
    c = load("fsdd_digits", **{**kw, "seed": 6})
    assert a.task == "ctc"
    for s in a.splits:
        assert a.splits[s].transcripts == b.splits[s].transcripts
        assert all(np.array_equal(x, y) for x, y in zip(a.splits[s].audio, b.splits[s].audio))
        for t, x in zip(a.splits[s].transcripts, a.splits[s].audio):
            words = t.split()
            assert 1 <= len(words) <= 7 and set(words) <= set(DIGIT_WORDS)
            assert x.shape[0] > 16000 * (0.2 + 0.05 * (len(words) - 1)) + 0.1 * 16000 * len(words)
            assert a.decode(a.encode(t)) == t
    assert a.splits["train"].transcripts != c.splits["train"].transcripts


def _write_fixture(root, speakers=("ann", "bob"), takes=range(12), digits=range(10)):
    """8 kHz WAVs whose length encodes the digit and whose frequency encodes (digit, speaker,
    take), so each recording's samples are unique."""
    rec = root / "recordings"
    rec.mkdir(parents=True)
    for d in digits:
        for i, sp in enumerate(speakers):
            for t in takes:
                n = 1200 + 100 * d  # 8 kHz, length encodes the digit
                w = 0.05 + 0.001 * (t + 50 * (d + 10 * i))  # radians per sample, < pi
                sf.write(
                    rec / f"{d}_{sp}_{t}.wav",
                    0.3 * np.sin(np.arange(n) * w),
                    8000,
                    subtype="PCM_16",
                )
    return rec


def test_fsdd_fixture_official_split_and_resampling(tmp_path):
    rec = _write_fixture(tmp_path / "fsdd")
    (rec / "README.wav").write_bytes(b"")  # does not match the naming pattern
    with pytest.warns(UserWarning, match="skipped 1 WAV"):
        ds = load("fsdd", data_dir=str(tmp_path / "fsdd"))
    assert [len(ds.splits[s].audio) for s in ("train", "validation", "test")] == [40, 100, 100]
    for sp in ds.splits.values():
        for a, l in zip(sp.audio, sp.labels):
            assert a.shape[0] == 2 * (1200 + 100 * l)


def _find_recordings(utterance, recordings):
    """-> [(start, key)] for every place a recording's samples lie in `utterance`, in time order."""
    found = []
    u = utterance.tobytes()
    for key, a in recordings.items():
        at = u.find(a.tobytes())
        while at >= 0:
            if at % 2 == 0:  # a match must start on a sample boundary
                found.append((at // 2, key))
            at = u.find(a.tobytes(), at + 1)
    return sorted(found)


def test_fsdd_digits_fixture_takes_disjoint(tmp_path):
    takes = {"test": (0, 4), "validation": (5, 9), "train": (10, 30)}  # each split's own takes
    rec = _write_fixture(tmp_path / "fsdd", takes=sum(takes.values(), ()))
    recordings = {}  # (digit, speaker, take) -> the 16 kHz int16 samples the loader reads
    for f in sorted(os.listdir(rec)):
        d, sp, t = f[:-4].split("_")
        recordings[(int(d), sp, int(t))] = read_wav(str(rec / f))
    ds = load(
        "fsdd_digits", data_dir=str(tmp_path / "fsdd"), train_size=6, validation_size=4, test_size=4
    )
    used = {}
    for s, sp in ds.splits.items():
        assert len(sp.audio) == len(sp.transcripts) == len(sp.speakers)
        used[s] = set()
        for audio, text, speaker in zip(sp.audio, sp.transcripts, sp.speakers):
            found = _find_recordings(audio, recordings)
            # the utterance is its words' recordings, in order, all by its one speaker
            assert [DIGIT_WORDS[d] for _, (d, _, _) in found] == text.split()
            assert {k[1] for _, k in found} == {speaker} and 1 <= len(found) <= 7
            used[s] |= {t for _, (_, _, t) in found}
        assert used[s] and used[s] <= set(takes[s]), (s, used[s])
    assert not used["train"] & used["validation"] and not used["train"] & used["test"]
    assert not used["validation"] & used["test"]


def test_fsdd_bad_inputs(tmp_path):
    (tmp_path / "empty" / "recordings").mkdir(parents=True)
    with pytest.raises(
        ValueError, match=r"expected DIR/recordings/\{digit\}_\{speaker\}_\{index\}.wav"
    ):
        load("fsdd", data_dir=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="not a directory"):
        load("fsdd", data_dir=str(tmp_path / "nowhere"))
    rec = _write_fixture(tmp_path / "bad", speakers=("ann",), takes=(0, 5, 10), digits=(1,))
    (rec / "2_ann_7.wav").write_bytes(b"RIFFbroken")
    with pytest.raises(AudioError, match="2_ann_7.wav"):
        load("fsdd", data_dir=str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="split must be"):
        load("fsdd", data_dir=str(tmp_path / "bad"), split="random")
