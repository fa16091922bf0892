"""Bucketed padding, deterministic/resumable training stream, complete evaluation pass,
meanings (intent and slot ids) for spoken-language-understanding splits."""

import itertools

import numpy as np
import pytest

from rnnbench.data import CTC_ALPHABET, Dataset, Split, meanings, phrases
from rnnbench.data.batching import eval_batches, train_batches

BUCKETS = (4000, 8000, 16000)


class CountingList(list):
    """A list that counts element reads, to check that resuming does no audio work."""

    reads = 0

    def __getitem__(self, i):
        CountingList.reads += 1
        return super().__getitem__(i)


def make_split(n=37, seed=0, ctc=False):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1000, 16001, n)
    audio = [rng.integers(-20000, 20000, l).astype(np.int16) for l in lengths]
    if ctc:
        words = ["one", "two", "oh", "nine"]
        transcripts = [" ".join(rng.choice(words, rng.integers(1, 6))) for _ in range(n)]
        return Split(audio, None, transcripts, [f"s{i % 3}" for i in range(n)])
    return Split(
        audio, rng.integers(0, 12, n).astype(np.int32), None, [f"s{i % 3}" for i in range(n)]
    )


def _take(it, k):
    return list(itertools.islice(it, k))


def _eq(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_train_batch_contents_and_buckets():
    sp = make_split()
    for b in _take(train_batches(sp, batch_size=8, seed=1, buckets=BUCKETS), 6):
        B, S = b["audio"].shape
        assert B == 8 and b["audio"].dtype == np.float32 and S in BUCKETS
        longest = b["audio_lengths"].max()
        assert S == min(x for x in BUCKETS if x >= longest)
        assert b["weights"].tolist() == [1.0] * 8 and b["labels"].shape == (8,)
        for row, n, label in zip(b["audio"], b["audio_lengths"], b["labels"]):
            i = next(
                j
                for j, a in enumerate(sp.audio)
                if a.shape[0] == n and np.array_equal(a / 32768.0, row[:n].astype(np.float64))
            )
            assert sp.labels[i] == label
            assert not row[n:].any() and np.abs(row).max() <= 1.0


def test_train_stream_deterministic_and_epochs_are_permutations():
    sp = make_split()
    a = _take(train_batches(sp, batch_size=8, seed=3, buckets=BUCKETS), 9)
    b = _take(train_batches(sp, batch_size=8, seed=3, buckets=BUCKETS), 9)
    c = _take(train_batches(sp, batch_size=8, seed=4, buckets=BUCKETS), 9)
    assert all(_eq(x, y) for x, y in zip(a, b))
    assert not all(_eq(x, y) for x, y in zip(a, c))
    # one epoch = 37 // 8 = 4 batches with 32 distinct examples; epochs reshuffle
    order = lambda bs: [int(l) for x in bs for l in x["audio_lengths"]]
    ep0, ep1 = order(a[:4]), order(a[4:8])
    assert len(set(ep0)) == len(ep0) == 32  # lengths are distinct with high probability
    assert ep0 != ep1


def test_resume_from_step_equals_continuation_without_replaying():
    sp = make_split()
    full = _take(train_batches(sp, batch_size=8, seed=7, buckets=BUCKETS), 12)
    for k in (0, 3, 4, 9):
        resumed = _take(
            train_batches(sp, batch_size=8, seed=7, buckets=BUCKETS, start_step=k), 12 - k
        )
        assert all(_eq(x, y) for x, y in zip(full[k:], resumed))
    counted = Split(CountingList(sp.audio), sp.labels, None, sp.speakers)
    it = train_batches(counted, batch_size=8, seed=7, buckets=BUCKETS, start_step=100_000)
    CountingList.reads = 0
    first = next(it)
    assert CountingList.reads <= 2 * 8  # only this batch's clips were touched
    assert _eq(
        first, next(train_batches(sp, batch_size=8, seed=7, buckets=BUCKETS, start_step=100_000))
    )


def test_eval_covers_every_example_once_in_order():
    sp = make_split(n=37)
    batches = list(eval_batches(sp, batch_size=8, buckets=BUCKETS))
    assert len(batches) == 5 and all(b["audio"].shape[0] == 8 for b in batches)
    w = np.concatenate([b["weights"] for b in batches])
    assert w.sum() == 37 and w[:37].all() and not w[37:].any()
    rows = [
        (row, n, l)
        for b in batches
        for row, n, l, wt in zip(b["audio"], b["audio_lengths"], b["labels"], b["weights"])
        if wt
    ]
    for i, (row, n, l) in enumerate(rows):
        assert n == sp.audio[i].shape[0] and l == sp.labels[i]
        assert np.array_equal(row[:n], sp.audio[i] / np.float32(32768.0))
    last = batches[-1]
    assert np.isfinite(last["audio"]).all() and (last["audio_lengths"] > 0).all()


def test_ctc_labels_padded_to_fixed_length():
    sp = make_split(ctc=True)
    ds = Dataset("toy", "ctc", list(CTC_ALPHABET), {"train": sp})
    longest = max(len(t) for t in sp.transcripts)
    shapes = set()
    for b in _take(
        train_batches(sp, batch_size=8, seed=0, buckets=BUCKETS, encode=ds.encode), 5
    ) + list(eval_batches(sp, batch_size=8, buckets=BUCKETS, encode=ds.encode)):
        shapes.add(b["labels"].shape[1])
        for lab, n, row, an in zip(b["labels"], b["label_lengths"], b["audio"], b["audio_lengths"]):
            assert not lab[n:].any() and (lab[:n] > 0).all()
            i = next(j for j, a in enumerate(sp.audio) if a.shape[0] == an)
            assert ds.decode(lab[:n]) == sp.transcripts[i]
    L = shapes.pop()
    assert not shapes and L % 8 == 0 and longest <= L < longest + 8
    with pytest.raises(ValueError, match="encode"):
        next(train_batches(sp, batch_size=8, seed=0, buckets=BUCKETS))


def test_bad_arguments():
    sp = make_split()
    long_idx = int(np.argmax([a.shape[0] for a in sp.audio]))
    n = sp.audio[long_idx].shape[0]
    second = sorted(a.shape[0] for a in sp.audio)[-2]  # only the longest clip exceeds this bucket
    with pytest.raises(ValueError, match=f"example {long_idx} has {n} samples"):
        train_batches(sp, batch_size=4, seed=0, buckets=(second,))
    with pytest.raises(ValueError, match=f"example {long_idx} has {n} samples"):
        eval_batches(sp, batch_size=4, buckets=(second,))
    with pytest.raises(ValueError, match="batch_size"):
        train_batches(sp, batch_size=100, seed=0, buckets=BUCKETS)


def _meaning_split(n=21, seed=0):
    """A CTC split whose utterances also carry meanings (as synth_phrases' do)."""
    sp = make_split(n=n, seed=seed, ctc=True)
    pool = [m for intent in ("lights", "cancel", "weather") for m in phrases.meanings(intent)[:5]]
    sp.meanings = [pool[i % len(pool)] for i in range(n)]
    return sp


def test_meaning_batches_carry_intent_and_slots():
    codec = meanings.synth_phrases_codec()
    sp = _meaning_split()
    ds = Dataset("toy", "ctc", list(CTC_ALPHABET), {"train": sp})
    S = len(codec.slot_names)
    batches = _take(
        train_batches(
            sp, batch_size=8, seed=2, buckets=BUCKETS, encode=ds.encode, encode_meaning=codec.encode
        ),
        4,
    )
    batches += list(
        eval_batches(
            sp, batch_size=8, buckets=BUCKETS, encode=ds.encode, encode_meaning=codec.encode
        )
    )
    for b in batches:
        assert b["intent"].dtype == b["slots"].dtype == np.int32
        assert b["intent"].shape == (8,) and b["slots"].shape == (8, S)
        for row, n, intent, slots in zip(b["audio"], b["audio_lengths"], b["intent"], b["slots"]):
            i = next(
                j
                for j, a in enumerate(sp.audio)
                if a.shape[0] == n and np.array_equal(a / np.float32(32768.0), row[:n])
            )
            assert codec.decode(intent, slots) == sp.meanings[i]
            # slots of other intents read 0 (none)
            assert not slots[~codec.slot_mask[intent]].any()
    # without encode_meaning the batches are those of a plain CTC split, byte for byte
    plain = Split(sp.audio, None, sp.transcripts, sp.speakers)
    a = _take(train_batches(sp, batch_size=8, seed=2, buckets=BUCKETS, encode=ds.encode), 3)
    b = _take(train_batches(plain, batch_size=8, seed=2, buckets=BUCKETS, encode=ds.encode), 3)
    assert all(_eq(x, y) for x, y in zip(a, b)) and "intent" not in a[0]


def test_meaning_errors_name_the_example():
    codec = meanings.synth_phrases_codec()
    sp = _meaning_split()
    ds = Dataset("toy", "ctc", list(CTC_ALPHABET), {"train": sp})
    sp.meanings[5] = {"intent": "lights", "slots": {"action": "sideways", "room": "none"}}
    with pytest.raises(ValueError, match=r"example 5 .*action = 'sideways' is outside the schema"):
        train_batches(
            sp, batch_size=8, seed=0, buckets=BUCKETS, encode=ds.encode, encode_meaning=codec.encode
        )
    plain = Split(sp.audio, None, sp.transcripts, sp.speakers)
    with pytest.raises(ValueError, match="no meanings"):
        eval_batches(
            plain, batch_size=8, buckets=BUCKETS, encode=ds.encode, encode_meaning=codec.encode
        )
