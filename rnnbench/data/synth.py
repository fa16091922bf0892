"""Synthetic speech corpora rendered in-process with eSpeak NG (the embedded default).

Recipe (RECIPE_VERSION 1), deterministic from ``seed``:

Speakers. eSpeak NG ships 104 voice variants (m1..m8, f1..f5, klatt1..6, whisper,
robosoft*, ...). The variants are shuffled with ``seed`` and partitioned: 16 test
voices, 16 validation voices, the remaining 72 for training, so **train,
validation and test speakers are disjoint** and test accuracy measures
generalisation to unseen voices. ``speakers`` holds the variant name. Each
utterance further draws an English accent (en, en-us, en-us-nyc, en-gb-x-rp,
en-gb-scotland, en-gb-x-gbclan, en-gb-x-gbcwmd, en-029), a speaking rate
(130-230 words/min), pitch (15-85) and pitch range (10-90) uniformly.

Rendering. 22,050 Hz int16 from eSpeak -> 16 kHz (``scipy.signal.resample_poly``,
320/441) -> leading/trailing silence trimmed (|x| < 2% of peak) -> peak scaled to
a level uniform in [-14, -1] dBFS.

Noise. Every clip gets additive coloured noise (white, pink or brown, chosen
uniformly; 1/f^alpha spectrum with alpha 0, 1, 2) at an SNR uniform in [10, 30] dB
relative to the speech RMS.

``synth_commands`` (classification). The 35 Speech Commands words. 1-second
clips (16,000 samples) with the word placed at a uniform random offset (words
longer than 1 s, rare at slow rates, are cut at 1 s).
- protocol 12: classes ``_silence_, _unknown_, yes, no, up, down, left, right,
  on, off, stop, go`` (TensorFlow order). ``_unknown_`` clips say one of the 25
  other words (uniformly); ``_silence_`` clips are noise only at an RMS level
  uniform in [-55, -25] dBFS.
- protocol 35: the 35 words, no silence/unknown class.
Labels are exactly balanced (round robin, then shuffled).
Default sizes: train 6000, validation 1200, test 1200 clips.

``synth_digits`` (CTC). Connected digit strings, 1-7 digits uniformly (like
TIDIGITS), 0 read as "zero" or "oh" with equal probability, rendered as one
utterance with an extra inter-word gap of 0-120 ms (eSpeak ``wordgap``), with
0.1-0.4 s of leading and trailing noise-only padding. Transcripts are the words
("four oh seven"); labels use the character alphabet ``CTC_ALPHABET``.
Default sizes: train 3000, validation 500, test 500 utterances.

Augmentation (``synth_commands(augment=..., noise_dir=...)``, off by default) of the training
split only. Options of augment.py: ``flite`` (a CMU Flite voice speaks the word: flite.py),
``intonation``, ``speed``, ``vtlp``, ``rir``, ``noise`` (more noise kinds, 0-30 dB; with
``noise_dir``, real recordings too), ``channel``, ``bandwidth`` and ``trim`` (the word cut out
with 0-50 ms of margin, shorter than 1 s), each applied to a clip with probability 1/2 (or the
p of ``name:p``). Training clip ``i`` keeps every draw of the recipe above (class, voice,
accent, rate, pitch, level, offset) and takes the augmentation's from its own generator (seed,
split, i, augment.AUGMENT_STREAM); a clip that Flite speaks keeps its class, names its Flite
voice as its speaker (``flite-slt``), and its level, offset and noise draws differ. So an
augmented corpus has the same labels and voices, split-disjoint as before, and the default
corpus's validation and test clips: byte-identical when train_size is a multiple of BLOCK (as
the default sizes are; otherwise a block mixes splits and eSpeak's call history, which babble,
intonation and Flite change, moves their bytes slightly), so accuracies on them compare across
recipes. The options (sorted), augment.VERSION, a digest of the noise files and, with
``flite``, Flite's version enter the spec; with no options the spec, the cache key and every
byte are those of the default corpus.

``synth_phrases`` (CTC, with a meaning per utterance) is built from the same pieces
(voice partition, rendering, noise, workers, cache); its grammar lives in phrases.py.

Caching. Corpora are written to ``{cache_dir}/{name}-{sha1(spec)[:12]}.npz``
(``cache_dir`` argument, else ``$RNNBENCH_CACHE``, else ``~/.cache/rnnbench``),
atomically (temp file + ``os.replace``); the spec covers the name, protocol, sizes,
seed, RECIPE_VERSION and the augmentation (if any), so any change rebuilds. Meanings,
where a corpus has them, are stored as one JSON string per utterance. The random choices for clip
``i`` of a split depend only on (seed, split, i), and the same spec gives the same
bytes. eSpeak NG keeps state between calls, so rendering happens in blocks of 2000
items, each in a fresh spawned process (2 at a time by default, ``num_workers``),
which makes the bytes independent of the calling process and of the worker count.

Measured build time (2 cores shared with other jobs, load average ~7): default
synth_commands (8,400 clips) 28 s (16 s single-process on a lighter load);
default synth_digits (4,000 utterances) 26-45 s; loading from the cache 0.2 s.

Learnability check (scratch script, not in the repo): log-mel 40 + utterance
normalisation, 1-layer LSTM 128, Adam 3e-3 cosine, batch 64, 1500 steps (~4 min
on the loaded machine), no SpecAugment: train 99.8%, validation 95.7%, test 93.2%
on the 16 unseen test voices (an earlier recipe with SNR 5-30 dB and SpecAugment
reached 89.5% test after the same steps).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable

import numpy as np

from rnnbench import atomic
from rnnbench.data import CTC_ALPHABET, DIGIT_WORDS, SAMPLE_RATE, Dataset, Split
from rnnbench.data import augment as augment_lib
from rnnbench.data import flite as flite_lib
from rnnbench.data.audio import default_cache_dir, resample, to_int16
from rnnbench.data.augment import colored_noise
from rnnbench.data.espeak import ESpeak

RECIPE_VERSION = 1
WORDS_35 = [
    "backward",
    "bed",
    "bird",
    "cat",
    "dog",
    "down",
    "eight",
    "five",
    "follow",
    "forward",
    "four",
    "go",
    "happy",
    "house",
    "learn",
    "left",
    "marvin",
    "nine",
    "no",
    "off",
    "on",
    "one",
    "right",
    "seven",
    "sheila",
    "six",
    "stop",
    "three",
    "tree",
    "two",
    "up",
    "visual",
    "wow",
    "yes",
    "zero",
]
COMMANDS_10 = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
CLASSES_12 = ["_silence_", "_unknown_"] + COMMANDS_10
ACCENTS = [
    "en",
    "en-us",
    "en-us-nyc",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
]
SPLITS = ("train", "validation", "test")
N_TEST_VOICES = 16
N_VALIDATION_VOICES = 16
BLOCK = 2000  # items per fresh worker process (part of the recipe: it fixes eSpeak's call history)


# ----------------------------------------------------------------------------- shared pieces


def voice_partition(variants: list[str], seed: int) -> dict[str, list[str]]:
    """Disjoint voice variants per split (16 test, 16 validation, rest train)."""
    perm = np.random.default_rng([seed, 7919]).permutation(sorted(variants)).tolist()
    n_te, n_va = N_TEST_VOICES, N_VALIDATION_VOICES
    if len(perm) < n_te + n_va + 1:
        raise ValueError(
            f"need at least {n_te + n_va + 1} eSpeak voice variants, found {len(perm)}"
        )
    return {
        "test": perm[:n_te],
        "validation": perm[n_te : n_te + n_va],
        "train": perm[n_te + n_va :],
    }


def draw_speakers(rng: np.random.Generator, voices: list[str], n: int) -> list[str]:
    """``n`` voices drawn uniformly (with replacement) from one split's ``voices``."""
    return [voices[j] for j in rng.integers(0, len(voices), size=n)]


def render_speech(
    es: ESpeak,
    rng: np.random.Generator,
    text: str,
    variant: str,
    *,
    max_seconds: float | None = None,
    **extra,
) -> np.ndarray:
    """Speak ``text`` with a random accent/rate/pitch; float32 [n] at 16 kHz, trimmed, scaled.

    With ``max_seconds``, speech that lasts longer is rendered again 1.2x faster (up to
    eSpeak's 450 words/min) until it fits; ``extra`` goes to ``ESpeak.synth`` (e.g. wordgap).
    """
    accent = ACCENTS[rng.integers(len(ACCENTS))]
    rate, pitch, pitch_range = (int(rng.integers(*r)) for r in ((130, 231), (15, 86), (10, 91)))
    while True:
        x = es.synth(
            text,
            voice=f"{accent}+{variant}",
            rate=rate,
            pitch=pitch,
            pitch_range=pitch_range,
            **extra,
        )
        x = resample(x.astype(np.float32) / 32768.0, es.sample_rate, SAMPLE_RATE)
        x, peak = trimmed(x, f"eSpeak with voice {variant!r}", text)
        if max_seconds is None or x.shape[0] <= max_seconds * SAMPLE_RATE or rate >= 450:
            break
        rate = min(450, int(rate * 1.2))
    return at_random_level(rng, x, peak)


def trimmed(x: np.ndarray, source: str, text: str) -> tuple[np.ndarray, float]:
    """``x`` without its leading and trailing samples under 2% of its peak, and that peak."""
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak <= 0:
        raise RuntimeError(f"{source} produced silence for {text!r}")
    idx = np.nonzero(np.abs(x) > 0.02 * peak)[0]
    return x[idx[0] : idx[-1] + 1], peak


def at_random_level(rng: np.random.Generator, x: np.ndarray, peak: float) -> np.ndarray:
    """``x`` scaled to a peak 1-14 dB below full scale (uniform in dB)."""
    return x * (10 ** (rng.uniform(-14, -1) / 20) / peak)


def add_noise(rng: np.random.Generator, clip: np.ndarray, speech_rms: float) -> np.ndarray:
    """``clip`` + coloured noise at an SNR uniform in [10, 30] dB relative to ``speech_rms``."""
    snr_db = rng.uniform(10, 30)
    return clip + colored_noise(rng, clip.shape[0]) * (speech_rms / 10 ** (snr_db / 20))


def _render_block(clip_fn: Callable, items: list[tuple]) -> list:
    """``[clip_fn(es, *item) for item in items]`` in a fresh process (espeak.py: determinism)."""
    es = ESpeak()
    return [clip_fn(es, *item) for item in items]


def render_all(clip_fn: Callable, items: list[tuple], num_workers: int | None) -> list:
    """``clip_fn(es, *item)`` for every item, in blocks of BLOCK in new spawned processes.

    ``clip_fn`` must be a module-level function (it is pickled). eSpeak keeps state across
    calls, so each block starts from a fresh library and renders its items in a fixed order:
    the output bytes depend only on the items, not on the history of the calling process or
    the number of workers. Results come back in the order of ``items``.
    """
    blocks = [items[k : k + BLOCK] for k in range(0, len(items), BLOCK)]
    if not blocks:
        return []
    workers = max(1, min(num_workers or min(2, os.cpu_count() or 1), len(blocks)))
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=ctx, max_tasks_per_child=1
    ) as ex:
        futures = [ex.submit(_render_block, clip_fn, b) for b in blocks]
        return [x for f in futures for x in f.result()]


def cache_path(name: str, spec: dict, cache_dir) -> str:
    """``{cache_dir}/{name}-{sha1(spec)[:12]}.npz``."""
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return os.path.join(default_cache_dir(cache_dir), f"{name}-{digest}.npz")


def _save(path: str, spec: dict, splits: dict[str, Split]) -> None:
    arrays = {"spec": np.array(json.dumps(spec, sort_keys=True))}
    for s, sp in splits.items():
        arrays[f"{s}/audio"] = np.concatenate(sp.audio) if sp.audio else np.zeros(0, np.int16)
        arrays[f"{s}/lengths"] = np.array([a.shape[0] for a in sp.audio], np.int64)
        arrays[f"{s}/speakers"] = np.array(sp.speakers, dtype=str)
        if sp.labels is not None:
            arrays[f"{s}/labels"] = sp.labels
        if sp.transcripts is not None:
            arrays[f"{s}/transcripts"] = np.array(sp.transcripts, dtype=str)
        if sp.meanings is not None:
            arrays[f"{s}/meanings"] = np.array(
                [json.dumps(m, sort_keys=True) for m in sp.meanings], dtype=str
            )
    atomic.save_npz(path, **arrays)


def _load(path: str) -> dict[str, Split]:
    with np.load(path, allow_pickle=False) as z:
        splits = {}
        for s in SPLITS:
            ends = np.cumsum(z[f"{s}/lengths"])
            audio = np.split(z[f"{s}/audio"], ends[:-1]) if ends.size else []
            splits[s] = Split(
                audio=[np.ascontiguousarray(a) for a in audio],
                labels=z[f"{s}/labels"].astype(np.int32) if f"{s}/labels" in z else None,
                transcripts=z[f"{s}/transcripts"].tolist() if f"{s}/transcripts" in z else None,
                speakers=z[f"{s}/speakers"].tolist(),
                meanings=(
                    [json.loads(m) for m in z[f"{s}/meanings"].tolist()]
                    if f"{s}/meanings" in z
                    else None
                ),
            )
    return splits


def cached_splits(
    name: str, spec: dict, cache_dir, use_cache: bool, build: Callable[[], dict[str, Split]]
) -> dict[str, Split]:
    """The splits cached for ``spec`` if present, else ``build()`` (saved atomically)."""
    path = cache_path(name, spec, cache_dir)
    if use_cache and os.path.exists(path):
        return _load(path)
    splits = build()
    if use_cache:
        _save(path, spec, splits)
    return splits


def check_sizes(train_size, validation_size, test_size) -> dict[str, int]:
    """{split: size}, each a non-negative int (ValueError naming the bad one)."""
    sizes = {"train": train_size, "validation": validation_size, "test": test_size}
    for k, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{k}_size must be a non-negative int, got {v!r}")
    return {k: int(v) for k, v in sizes.items()}


# ----------------------------------------------------------------------------- corpora


def _augment_draws(seed, split_id, i, augment) -> tuple:
    """Clip i's augmentation generator, the options it gets and, with ``flite`` among them,
    the Flite (voice, duration stretch) that speaks it instead of its eSpeak voice (else None).

    Drawn from a stream of its own: the base draws of clip i stay the same."""
    arng = np.random.default_rng([seed, split_id, i, augment_lib.AUGMENT_STREAM])
    augment = augment_lib.chosen(arng, augment)
    return arng, augment, flite_lib.draw(arng) if "flite" in augment else None


def _command_clip(
    es, seed, split_id, i, cls, classes, variant, augment=(), voices=(), noise_dir=None
) -> np.ndarray:
    rng = np.random.default_rng([seed, split_id, i])
    n = SAMPLE_RATE
    arng = bank = flite_source = None
    if augment:
        arng, augment, flite_source = _augment_draws(seed, split_id, i, augment)
        bank = augment_lib.noise_bank(noise_dir) if noise_dir else None
    if cls == "_silence_":
        if "noise" in augment:
            clip = augment_lib.background(arng, n, bank=bank)
        else:
            clip = colored_noise(rng, n)
        clip = clip * 10 ** (rng.uniform(-55, -25) / 20)
        return to_int16(_recording(arng, clip, augment))
    if cls == "_unknown_":
        others = [w for w in WORDS_35 if w not in classes]
        word = others[rng.integers(len(others))]
    else:
        word = cls
    text = augment_lib.intonation(arng, word) if "intonation" in augment else word
    if flite_source:  # a voice built from a real person's recordings
        speech, peak = trimmed(flite_lib.synth(text, *flite_source), f"flite {flite_source}", text)
        speech = at_random_level(arng, speech, peak)
    else:
        speech = render_speech(es, rng, text, variant)
    for name, fn in (
        ("speed", augment_lib.speed),
        ("vtlp", augment_lib.vtlp),
        ("rir", augment_lib.reverberate),
    ):
        if name in augment:
            speech = fn(arng, speech)
    speech = speech[:n]
    clip = np.zeros(n, np.float32)
    off = int(rng.integers(0, n - speech.shape[0] + 1))
    clip[off : off + speech.shape[0]] = speech
    rms = float(np.sqrt(np.mean(speech**2)))
    if "noise" not in augment:
        clip = add_noise(rng, clip, rms)
    else:

        def speak(r):  # a babble talker: two words, a voice of this clip's split
            words = " ".join(WORDS_35[j] for j in r.integers(len(WORDS_35), size=2))
            return render_speech(es, r, words, voices[r.integers(len(voices))])

        clip = augment_lib.add_background(arng, clip, rms, speak=speak, bank=bank)
    clip = _recording(arng, clip, augment)
    if "trim" in augment:
        clip = augment_lib.trim(arng, clip, off, off + speech.shape[0])
    return to_int16(clip)


def _recording(arng, clip: np.ndarray, augment) -> np.ndarray:
    """The microphone/line and the recording's sample rate (augment options)."""
    if "channel" in augment:
        clip = augment_lib.channel(arng, clip)
    if "bandwidth" in augment:
        clip = augment_lib.bandwidth(arng, clip)
    return clip


def _digit_clip(es, seed, split_id, i, variant) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng([seed, split_id, i])
    digits = rng.integers(0, 10, size=int(rng.integers(1, 8)))
    words = [("oh" if rng.random() < 0.5 else "zero") if d == 0 else DIGIT_WORDS[d] for d in digits]
    text = " ".join(words)
    speech = render_speech(es, rng, text, variant, wordgap=int(rng.integers(0, 13)))
    lead, trail = (int(rng.uniform(0.1, 0.4) * SAMPLE_RATE) for _ in range(2))
    clip = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(trail, np.float32)])
    return to_int16(add_noise(rng, clip, float(np.sqrt(np.mean(speech**2))))), text


def synth_commands(
    *,
    data_dir=None,
    protocol: int = 12,
    seed: int = 0,
    cache_dir=None,
    train_size: int = 6000,
    validation_size: int = 1200,
    test_size: int = 1200,
    augment=(),
    noise_dir: str | None = None,
    use_cache: bool = True,
    num_workers: int | None = None,
) -> Dataset:
    """Synthetic Speech Commands (see module docstring). ``data_dir`` is ignored.

    ``augment``: option names of rnnbench/data/augment.py (a list or "speed,rir"), applied to
    the training split; ``noise_dir``: a folder of noise WAVs for the ``noise`` option.
    """
    if protocol not in (12, 35):
        raise ValueError(f"synth_commands: protocol must be 12 or 35, got {protocol!r}")
    sizes = check_sizes(train_size, validation_size, test_size)
    augment = augment_lib.check_options(augment, noise_dir)
    classes = CLASSES_12 if protocol == 12 else list(WORDS_35)
    uses_flite = "flite" in augment_lib.probabilities(augment)
    spec = dict(
        name="synth_commands",
        recipe=RECIPE_VERSION,
        block=BLOCK,
        protocol=protocol,
        seed=seed,
        **sizes,
    )
    if augment:  # the default spec (and so its cache key) is unchanged
        spec.update(
            augment=list(augment),
            augment_version=augment_lib.VERSION,
            noise_files=augment_lib.noise_digest(noise_dir) if noise_dir else None,
        )
        if uses_flite:
            spec.update(flite=flite_lib.version())

    def build() -> dict[str, Split]:
        voices = voice_partition(ESpeak().variants, seed)
        plan = {}
        for split_id, s in enumerate(SPLITS):
            lrng = np.random.default_rng([seed, split_id, 104729])
            labels = lrng.permutation(np.arange(sizes[s]) % len(classes)).astype(np.int32)
            plan[s] = (labels, draw_speakers(lrng, voices[s], sizes[s]))
        if uses_flite:  # the training clips that Flite speaks name its voice
            labels, speakers = plan["train"]
            for i in range(sizes["train"]):
                source = _augment_draws(seed, 0, i, augment)[2]
                if source and classes[labels[i]] != "_silence_":
                    speakers[i] = f"flite-{source[0]}"
        extra = {
            s: (augment, tuple(voices[s]), noise_dir) if augment and s == "train" else ()
            for s in SPLITS
        }  # validation and test stay the default recipe's clips
        items = [
            (seed, split_id, i, classes[plan[s][0][i]], classes, plan[s][1][i], *extra[s])
            for split_id, s in enumerate(SPLITS)
            for i in range(sizes[s])
        ]
        audio = iter(render_all(_command_clip, items, num_workers))
        return {
            s: Split(
                audio=[next(audio) for _ in range(sizes[s])],
                labels=plan[s][0],
                transcripts=None,
                speakers=plan[s][1],
            )
            for s in SPLITS
        }

    splits = cached_splits("synth_commands", spec, cache_dir, use_cache, build)
    return Dataset("synth_commands", "classify", list(classes), splits)


def synth_digits(
    *,
    data_dir=None,
    protocol: int = 12,
    seed: int = 0,
    cache_dir=None,
    train_size: int = 3000,
    validation_size: int = 500,
    test_size: int = 500,
    use_cache: bool = True,
    num_workers: int | None = None,
) -> Dataset:
    """Synthetic connected digit strings for CTC (see module docstring). ``protocol`` is ignored."""
    sizes = check_sizes(train_size, validation_size, test_size)
    spec = dict(name="synth_digits", recipe=RECIPE_VERSION, block=BLOCK, seed=seed, **sizes)

    def build() -> dict[str, Split]:
        voices = voice_partition(ESpeak().variants, seed)
        speakers = {
            s: draw_speakers(np.random.default_rng([seed, split_id, 104729]), voices[s], sizes[s])
            for split_id, s in enumerate(SPLITS)
        }
        items = [
            (seed, split_id, i, speakers[s][i])
            for split_id, s in enumerate(SPLITS)
            for i in range(sizes[s])
        ]
        pairs = iter(render_all(_digit_clip, items, num_workers))
        splits = {}
        for s in SPLITS:
            got = [next(pairs) for _ in range(sizes[s])]
            splits[s] = Split(
                audio=[a for a, _ in got],
                labels=None,
                transcripts=[t for _, t in got],
                speakers=speakers[s],
            )
        return splits

    splits = cached_splits("synth_digits", spec, cache_dir, use_cache, build)
    return Dataset("synth_digits", "ctc", list(CTC_ALPHABET), splits)
