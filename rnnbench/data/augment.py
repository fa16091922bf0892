"""Corpus-side augmentation for the synthetic corpora: speaker, room, noise and channel variety.

``synth_commands(augment=("speed", "rir", ...))`` applies these to its training clips while it
renders, each drawn from a generator of its own per clip, so a corpus stays a pure function of
its spec (the option names and ``VERSION`` enter the spec and the cache key), the speaker
partition is untouched and validation and test clips are the default corpus's.
Each option is applied to a training clip with probability PROB = 1/2 (or its own, written
``name:p``), independently (``chosen``), so training sees clean and augmented variants of every
condition. All functions
take float32 [n] audio at 16 kHz and return float32.

Options (``OPTIONS``), in the order a clip meets them:

- ``flite``: the word is spoken by a voice of CMU Flite (rnnbench/data/flite.py: voices built
  from recordings of four real people) with a duration stretch in [0.8, 1.3], instead of the
  clip's eSpeak voice; needs the ``flite`` program. Training split only, like every option,
  so validation and test stay eSpeak's unseen voices; the clip's speaker is ``flite-<voice>``.
- ``intonation``: the word is spoken as a statement, question, exclamation or list item
  ("yes." / "yes?" / "yes!" / "yes,"), which changes eSpeak's pitch contour.
- ``speed``: speed perturbation (Ko et al., 2015): resampled by a factor in [0.85, 1.15], which
  scales duration, pitch and formants (vocal-tract length) together.
- ``vtlp``: vocal-tract-length perturbation (Jaitly & Hinton, 2013) on the waveform: the STFT
  magnitude's frequency axis is warped by alpha in [0.88, 1.12] (piecewise linear, fixed above
  4.8 kHz boundary), phase kept, duration unchanged.
- ``rir``: convolution with a synthetic room impulse response (``room_impulse_response``):
  direct path, a few early reflections and an exponentially decaying noise tail with RT60 in
  [0.1, 0.9] s and a direct-to-reverberant ratio in [-3, 15] dB; the level is kept.
- ``noise``: the noise is drawn from more kinds at a wider SNR, uniform in [0, 30] dB (the
  default recipe: coloured noise at 10-30 dB): coloured noise, slowly amplitude-modulated
  coloured noise (traffic, wind), babble (2-4 talkers, each two time-reversed eSpeak words, in
  voices of the same split, so voices stay split-disjoint) and, with ``noise_dir``, segments
  of real recordings (e.g. Speech Commands' ``_background_noise_``), each kind equally likely.
  Silence clips draw from the same kinds except babble, at the default silence levels.
- ``channel``: a microphone / line: high-pass at 40-300 Hz, two peaking EQ bands of +-9 dB, and
  with probability 1/2 a low-pass at 3.4-7.5 kHz (telephone- and 8 kHz-recordings' bandwidth).
- ``bandwidth``: the clip was recorded at 8 or 12 kHz: resampled down and back to 16 kHz, so nothing is left above 4 or 6 kHz (a low-pass filter only attenuates, and
  per-channel feature normalisation undoes attenuation; an empty band is what such recordings,
  FSDD's 8 kHz ones among them, look like).
- ``trim``: the clip is cut to the word plus TRIM_MARGIN_S of its own noise on each side, as
  trimmed recordings (FSDD's) come, instead of the word at a random offset in 1 s; the clip is
  then shorter than 1 s. Silence clips are left whole.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Sequence

import numpy as np
import scipy.fft
import scipy.signal

from rnnbench.data import SAMPLE_RATE

VERSION = 3  # 1: every split, every clip; 2: training split only; 3: each option with PROB
OPTIONS = ("flite", "intonation", "speed", "vtlp", "rir", "noise", "channel", "bandwidth", "trim")
AUGMENT_STREAM = 0xA06  # the augmentation generator of clip i: default_rng([seed, split, i, it])
PROB = 0.5  # each option of a corpus is applied to a training clip with this probability

SPEED_RANGE = (0.85, 1.15)
VTLP_RANGE = (0.88, 1.12)
VTLP_BOUNDARY_HZ = 4800.0
INTONATION_MARKS = (".", "?", "!", ",")
RT60_RANGE = (0.1, 0.9)
DRR_DB_RANGE = (-3.0, 15.0)
SNR_DB_RANGE = (0.0, 30.0)
BABBLE_TALKERS = (2, 4)
HIGHPASS_HZ = (40.0, 300.0)
EQ_GAIN_DB = 9.0
LOWPASS_HZ = (3400.0, 7500.0)
NARROW_RATES = (8000, 12000)  # the bandwidth option's recording rates
TRIM_MARGIN_S = (0.0, 0.05)  # the trim option's margin before and after the word, seconds


def check_options(augment, noise_dir=None) -> tuple[str, ...]:
    """Canonical options: a sorted tuple of known names from a sequence or "a,b" string.

    An option is ``name`` (applied with probability PROB) or ``name:p`` (with probability p in
    (0, 1]; ``flite:1``: every training word); ``name:0.5`` is written ``name``. Order does not
    matter (a clip meets the options in the fixed order above). ValueError names an unknown
    option, a bad or repeated one, or a ``noise_dir`` given without the ``noise`` option.
    """
    if augment is None:
        augment = ()
    if isinstance(augment, str):
        augment = [a.strip() for a in augment.split(",") if a.strip()]
    if not isinstance(augment, Sequence) or not all(isinstance(a, str) for a in augment):
        raise ValueError(
            f"synth_commands: augment must be a list of option names or a "
            f"comma-separated string, got {augment!r}"
        )
    probs: dict[str, float] = {}
    for a in augment:
        name, sep, p = (x.strip() for x in a.partition(":"))
        if name not in OPTIONS:
            raise ValueError(
                f"synth_commands: unknown augment option {name!r} (in {a!r}); "
                f"known: {', '.join(OPTIONS)}"
            )
        try:
            prob = float(p) if sep else PROB
        except ValueError:
            prob = float("nan")
        if not 0 < prob <= 1:
            raise ValueError(
                f"synth_commands: augment option {a!r}: the probability after ':' must be a "
                "number in (0, 1]"
            )
        if probs.get(name, prob) != prob:
            raise ValueError(f"synth_commands: augment option {name!r} given twice: {augment!r}")
        probs[name] = prob
    if noise_dir is not None and "noise" not in probs:
        raise ValueError(
            f"synth_commands: noise_dir={noise_dir!r} is used by the 'noise' "
            f"augmentation; add 'noise' to augment (got {tuple(augment)})"
        )
    return tuple(n if p == PROB else f"{n}:{p:g}" for n, p in sorted(probs.items()))


def probabilities(augment: Sequence[str]) -> dict[str, float]:
    """``{option name: probability}`` of canonical options (``check_options``)."""
    return {n: float(p) if p else PROB for n, _, p in (a.partition(":") for a in augment)}


def chosen(rng: np.random.Generator, augment: Sequence[str]) -> tuple[str, ...]:
    """The options of ``augment`` one clip gets, each with its probability (OPTIONS order)."""
    probs = probabilities(augment)
    return tuple(o for o in OPTIONS if o in probs and rng.random() < probs[o])


# ----------------------------------------------------------------------------- speakers


def intonation(rng: np.random.Generator, text: str) -> str:
    """``text`` with a clause mark that sets eSpeak's intonation ("yes?", "yes!", ...)."""
    return text + INTONATION_MARKS[rng.integers(len(INTONATION_MARKS))]


def speed(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Played ``s`` times faster, ``s`` in SPEED_RANGE in steps of 0.01: [n] -> [~n / s]."""
    k = int(rng.integers(round(SPEED_RANGE[0] * 100), round(SPEED_RANGE[1] * 100) + 1))
    g = np.gcd(100, k)
    return scipy.signal.resample_poly(x, 100 // g, k // g).astype(np.float32)


def vtlp_map(freqs: np.ndarray, alpha: float, nyquist: float = SAMPLE_RATE / 2) -> np.ndarray:
    """Jaitly & Hinton's piecewise-linear warp: f -> alpha f below a boundary, then linear to
    the Nyquist frequency (which maps to itself)."""
    b = VTLP_BOUNDARY_HZ * min(alpha, 1.0) / alpha
    return np.where(
        freqs <= b,
        freqs * alpha,
        nyquist - (nyquist - b * alpha) / (nyquist - b) * (nyquist - freqs),
    )


def vtlp(rng: np.random.Generator, x: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Formants (and harmonics) moved by alpha in VTLP_RANGE, duration kept: [n] -> [n].

    STFT (periodic Hann, ``n_fft``, ``hop``), each bin's magnitude read from the warped
    frequency with its phase kept, weighted overlap-add.
    """
    alpha = float(rng.uniform(*VTLP_RANGE))
    n = x.shape[0]
    t = -(-(n + n_fft) // hop)
    padded = np.zeros((t + n_fft // hop - 1) * hop, np.float32)
    padded[n_fft : n_fft + n] = x
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    frames = padded[np.arange(t)[:, None] * hop + np.arange(n_fft)[None, :]] * window
    spec = np.fft.rfft(frames, axis=-1)  # [t, bins]
    freqs = np.linspace(0.0, SAMPLE_RATE / 2, spec.shape[1])
    pos = np.interp(freqs, vtlp_map(freqs, alpha), freqs) / freqs[1]  # source bin of each bin
    i0 = np.minimum(pos.astype(int), spec.shape[1] - 1)
    i1 = np.minimum(i0 + 1, spec.shape[1] - 1)
    mag = np.abs(spec)
    warped = (1 - (pos - i0)) * mag[:, i0] + (pos - i0) * mag[:, i1]
    frames = np.fft.irfft(spec * (warped / (mag + 1e-12)), n_fft, axis=-1) * window
    out, norm = np.zeros_like(padded), np.zeros_like(padded)
    for k in range(n_fft // hop):  # overlap-add: chunk k of frame j lands at (j + k) * hop
        out[k * hop : (k + t) * hop] += frames[:, k * hop : (k + 1) * hop].reshape(-1)
        norm[k * hop : (k + t) * hop] += np.tile(window[k * hop : (k + 1) * hop] ** 2, t)
    return (out / np.maximum(norm, 1e-3))[n_fft : n_fft + n].astype(np.float32)


# ----------------------------------------------------------------------------- rooms


def room_impulse_response(rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: unit direct path, 3-8 early reflections in 2-30 ms and a diffuse tail
    decaying 60 dB in RT60 (RT60_RANGE), scaled to a DRR in DRR_DB_RANGE; float32 [L]."""
    rt60 = rng.uniform(*RT60_RANGE)
    n = int(min(rt60, 0.6) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    onset = int(rng.uniform(0.002, 0.01) * SAMPLE_RATE)
    tail[:onset] = 0.0
    tail *= 10 ** (-rng.uniform(*DRR_DB_RANGE) / 20) / np.sqrt(np.sum(tail**2))
    h = tail
    h[0] = 1.0
    for _ in range(int(rng.integers(3, 9))):
        h[int(rng.uniform(0.002, 0.03) * SAMPLE_RATE)] += rng.uniform(-0.6, 0.6)
    return h.astype(np.float32)


def reverberate(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """``x`` in a synthetic room, tail included, at ``x``'s peak level: [n] -> [n + L - 1]."""
    y = scipy.signal.fftconvolve(x, room_impulse_response(rng))
    return (y * (np.abs(x).max() / (np.abs(y).max() + 1e-12))).astype(np.float32)


# ----------------------------------------------------------------------------- noise


def colored_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-RMS white/pink/brown noise, float32 [n] (the default recipe's noise)."""
    alpha = rng.integers(0, 3)
    m = scipy.fft.next_fast_len(n, real=True)
    spec = scipy.fft.rfft(rng.standard_normal(m).astype(np.float32))
    f = np.arange(spec.shape[0], dtype=np.float32)
    f[0] = 1.0
    x = scipy.fft.irfft(spec / f ** (alpha / 2.0), m)[:n]
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def modulated_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Coloured noise under a slow random envelope (0.5-4 Hz, depth 0.3-1); unit RMS [n]."""
    x = colored_noise(rng, n)
    knots = max(2, int(n / SAMPLE_RATE * rng.uniform(0.5, 4.0)) + 2)
    env = np.interp(np.arange(n), np.linspace(0, n - 1, knots), rng.uniform(0, 1, knots))
    x = x * (1 - rng.uniform(0.3, 1.0) * env)
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def babble(
    rng: np.random.Generator, n: int, speak: Callable[[np.random.Generator], np.ndarray]
) -> np.ndarray:
    """2-4 time-reversed utterances ``speak(rng)`` at random offsets and levels; unit RMS [n]."""
    out = np.zeros(n, np.float32)
    for _ in range(int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1))):
        x = speak(rng)[::-1][:n]
        x = x / (np.sqrt(np.mean(x**2)) + 1e-12) * 10 ** (rng.uniform(-6, 0) / 20)
        off = int(rng.integers(0, n - x.shape[0] + 1))
        out[off : off + x.shape[0]] += x
    return (out / (np.sqrt(np.mean(out**2)) + 1e-12)).astype(np.float32)


def noise_files(noise_dir: str) -> list[str]:
    """Sorted .wav paths in ``noise_dir`` (ValueError if there are none)."""
    if not os.path.isdir(noise_dir):
        raise ValueError(
            f"synth_commands: noise_dir {noise_dir!r} is not a directory; expected "
            "a folder of noise WAVs such as Speech Commands' _background_noise_"
        )
    paths = sorted(
        os.path.join(noise_dir, f) for f in os.listdir(noise_dir) if f.lower().endswith(".wav")
    )
    if not paths:
        raise ValueError(f"synth_commands: noise_dir {noise_dir!r} holds no .wav files")
    return paths


def noise_digest(noise_dir: str) -> str:
    """sha1 over the names and bytes of ``noise_dir``'s WAVs (enters the corpus spec)."""
    h = hashlib.sha1()
    for p in noise_files(noise_dir):
        h.update(os.path.basename(p).encode() + b"\0")
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


@functools.lru_cache(maxsize=2)
def noise_bank(noise_dir: str) -> tuple[np.ndarray, ...]:
    """The WAVs of ``noise_dir`` at 16 kHz, float32, each at least 1 s (read once a process)."""
    from rnnbench.data.audio import read_wav

    bank = []
    for p in noise_files(noise_dir):
        x = read_wav(p).astype(np.float32) / 32768.0
        if x.shape[0] < SAMPLE_RATE or not np.any(x):
            raise ValueError(f"synth_commands: noise file {p} is shorter than 1 s or silent")
        bank.append(x)
    return tuple(bank)


def recorded_noise(rng: np.random.Generator, n: int, bank: Sequence[np.ndarray]) -> np.ndarray:
    """A random [n] segment of a random recording of ``bank``; unit RMS."""
    x = bank[rng.integers(len(bank))]
    if x.shape[0] < n:
        x = np.tile(x, -(-n // x.shape[0]))
    off = int(rng.integers(0, x.shape[0] - n + 1))
    seg = x[off : off + n]
    return (seg / (np.sqrt(np.mean(seg**2)) + 1e-12)).astype(np.float32)


def background(rng: np.random.Generator, n: int, *, speak=None, bank=None) -> np.ndarray:
    """Unit-RMS noise [n] of a kind drawn uniformly: coloured, modulated, babble (if
    ``speak`` is given) or a recording (if ``bank`` is given)."""
    kinds = ["coloured", "modulated"] + ["babble"] * (speak is not None) + ["recorded"] * bool(bank)
    kind = kinds[rng.integers(len(kinds))]
    if kind == "coloured":
        return colored_noise(rng, n)
    if kind == "modulated":
        return modulated_noise(rng, n)
    if kind == "babble":
        return babble(rng, n, speak)
    return recorded_noise(rng, n, bank)


def add_background(
    rng: np.random.Generator, clip: np.ndarray, speech_rms: float, **kinds
) -> np.ndarray:
    """``clip`` + ``background`` noise at an SNR uniform in SNR_DB_RANGE re ``speech_rms``."""
    snr_db = rng.uniform(*SNR_DB_RANGE)
    return clip + background(rng, clip.shape[0], **kinds) * (speech_rms / 10 ** (snr_db / 20))


# ----------------------------------------------------------------------------- channels


def _biquad(kind: str, f0: float, q: float, gain_db: float = 0.0) -> np.ndarray:
    """An RBJ cookbook biquad ("lowpass", "highpass", "peaking") as one section [1, 6]."""
    w0 = 2 * np.pi * f0 / SAMPLE_RATE
    alpha, cos = np.sin(w0) / (2 * q), np.cos(w0)
    if kind == "peaking":
        a = 10 ** (gain_db / 40)
        b, den = [1 + alpha * a, -2 * cos, 1 - alpha * a], [1 + alpha / a, -2 * cos, 1 - alpha / a]
    else:
        edge = (1 - cos) / 2 if kind == "lowpass" else (1 + cos) / 2
        b = [edge, (1 - cos) if kind == "lowpass" else -(1 + cos), edge]
        den = [1 + alpha, -2 * cos, 1 - alpha]
    return np.concatenate([np.array(b) / den[0], np.array(den) / den[0]])[None]


def _butterworth(kind: str, f0: float, order: int) -> list[np.ndarray]:
    """An even-order Butterworth filter as order/2 biquads (pole-pair Qs)."""
    return [
        _biquad(kind, f0, 1 / (2 * np.cos((2 * k - 1) * np.pi / (2 * order))))
        for k in range(1, order // 2 + 1)
    ]


def channel(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """A random microphone/line response applied to ``x``, peak level kept: [n] -> [n]."""
    sos = _butterworth("highpass", rng.uniform(*HIGHPASS_HZ), 2)
    for _ in range(2):
        f0 = float(np.exp(rng.uniform(np.log(200.0), np.log(5000.0))))
        sos.append(
            _biquad("peaking", f0, rng.uniform(0.5, 2.0), rng.uniform(-EQ_GAIN_DB, EQ_GAIN_DB))
        )
    if rng.random() < 0.5:
        cutoff = float(np.exp(rng.uniform(*np.log(LOWPASS_HZ))))
        sos += _butterworth("lowpass", cutoff, 2 * int(rng.integers(2, 5)))
    y = scipy.signal.sosfilt(np.concatenate(sos), x)
    return (y * (np.abs(x).max() / (np.abs(y).max() + 1e-12))).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _narrowband_fir(up: int, down: int) -> np.ndarray:
    """A sharp anti-aliasing low-pass for resample_poly (cutoff 0.95 of the lower Nyquist
    frequency, Kaiser beta 8.6: about 90 dB down in the stop band)."""
    m = max(up, down)
    return scipy.signal.firwin(64 * m + 1, 0.95 / m, window=("kaiser", 8.6))


def bandwidth(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """``x`` as recorded at a rate of NARROW_RATES (nothing above its Nyquist): [n] -> [n]."""
    rate = int(NARROW_RATES[rng.integers(len(NARROW_RATES))])
    g = np.gcd(SAMPLE_RATE, rate)
    up, down = rate // g, SAMPLE_RATE // g
    low = scipy.signal.resample_poly(x, up, down, window=_narrowband_fir(up, down))
    back = scipy.signal.resample_poly(low, down, up, window=_narrowband_fir(down, up))
    return back[: x.shape[0]].astype(np.float32)


def trim(rng: np.random.Generator, x: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``x[start:stop]`` (the word) widened by a margin in TRIM_MARGIN_S on each side, within
    ``x``: [n] -> [stop - start + margins]."""
    lo, hi = (round(m * SAMPLE_RATE) for m in TRIM_MARGIN_S)
    before, after = (int(rng.integers(lo, hi + 1)) for _ in range(2))
    return x[max(0, start - before) : min(x.shape[0], stop + after)]
