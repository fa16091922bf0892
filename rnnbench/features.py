"""Speech features in pure JAX (jit-able): log-mel filterbank, MFCC, normalisation, SpecAugment
and a VTLP-style warp of the mel axis (training-time augmentation).

Conventions
- Framing: no centre padding. With ``win = round(sr * win_ms / 1000)`` and
  ``hop = round(sr * hop_ms / 1000)``, padded audio [B, S] gives
  ``T = 1 + (S - win) // hop`` frames and a clip of length n gives
  ``frame_lengths = max(0, 1 + (n - win) // hop)`` valid frames (frame t covers
  samples [t*hop, t*hop + win)). Frames at t >= frame_lengths are set to 0.
- STFT: periodic Hann window of length ``win``, zero-padded to ``n_fft``
  (default: next power of two >= win, i.e. 512 for 25 ms at 16 kHz), rfft, power.
  Equals ``librosa.stft(np.pad(y, (p, p)), n_fft, hop, win, center=False)`` with
  ``p = (n_fft - win) // 2`` (librosa centres the window inside n_fft).
- Mel: Slaney mel scale with Slaney area normalisation (librosa's default,
  ``htk=False, norm="slaney"``); ``htk=True`` selects the HTK mel formula.
- Log: natural log of (mel power + 1e-6).
- MFCC: DCT-II with orthonormal scaling of the log-mel, first ``n_mfcc`` coefficients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

LOG_EPS = 1e-6


def _hz_to_mel(f, htk: bool):
    f = np.asarray(f, np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(
        f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp
    )


def _mel_to_hz(m, htk: bool):
    m = np.asarray(m, np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_matrix(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float = 20.0,
    fmax: float | None = None,
    htk: bool = False,
) -> np.ndarray:
    """Triangular mel filterbank [n_fft // 2 + 1, n_mels], Slaney area-normalised (float32)."""
    fmax = sample_rate / 2.0 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={fmin}, fmax={fmax}")
    fft_freqs = np.linspace(0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin, htk), _hz_to_mel(fmax, htk), n_mels + 2), htk)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.T.astype(np.float32)


def frame_params(sample_rate, win_ms, hop_ms, n_fft):
    win = round(sample_rate * win_ms / 1000.0)
    hop = round(sample_rate * hop_ms / 1000.0)
    n_fft = int(2 ** np.ceil(np.log2(win))) if n_fft is None else int(n_fft)
    if n_fft < win:
        raise ValueError(f"n_fft={n_fft} must be >= window length {win} samples")
    return win, hop, n_fft


def num_frames(
    num_samples, *, sample_rate: int = 16000, win_ms: float = 25.0, hop_ms: float = 10.0
):
    """Frames of a clip of ``num_samples`` under the framing convention (works on arrays)."""
    win = round(sample_rate * win_ms / 1000.0)
    hop = round(sample_rate * hop_ms / 1000.0)
    return jnp.maximum(0, 1 + (jnp.asarray(num_samples) - win) // hop)


def _mask(frame_lengths, T):
    return jnp.arange(T)[None, :] < frame_lengths[:, None]  # [B, T]


def hann_window(win: int) -> np.ndarray:
    """Periodic Hann window [win], float32."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)).astype(np.float32)


def stft(audio, win: int, hop: int, n_fft: int):
    """audio [..., S] -> complex [..., T, n_fft // 2 + 1], T = 1 + (S - win) // hop: Hann-windowed
    frames of `win` samples every `hop`, zero-padded to `n_fft` (the caller checks S >= win)."""
    T = 1 + (audio.shape[-1] - win) // hop
    idx = np.arange(T)[:, None] * hop + np.arange(win)[None, :]
    return jnp.fft.rfft(audio[..., idx] * hann_window(win), n=n_fft, axis=-1)


def log_mel(
    audio,
    lengths,
    *,
    sample_rate: int = 16000,
    n_mels: int = 40,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    n_fft: int | None = None,
    fmin: float = 20.0,
    fmax: float | None = None,
    htk: bool = False,
):
    """audio [B, S] float32, lengths [B] -> (log-mel [B, T, n_mels] float32, frame_lengths [B] int32)."""
    win, hop, n_fft = frame_params(sample_rate, win_ms, hop_ms, n_fft)
    audio = jnp.asarray(audio, jnp.float32)
    S = audio.shape[1]
    if S < win:
        raise ValueError(f"audio has {S} samples per row, fewer than one window ({win})")
    T = 1 + (S - win) // hop
    spec = stft(audio, win, hop, n_fft)  # [B, T, n_fft//2+1]
    power = spec.real**2 + spec.imag**2  # [B, T, n_fft//2+1]
    mel = power @ jnp.asarray(mel_matrix(sample_rate, n_fft, n_mels, fmin, fmax, htk))
    feats = jnp.log(mel + LOG_EPS)
    frame_lengths = jnp.minimum(
        num_frames(lengths, sample_rate=sample_rate, win_ms=win_ms, hop_ms=hop_ms), T
    ).astype(jnp.int32)
    return jnp.where(_mask(frame_lengths, T)[..., None], feats, 0.0), frame_lengths


def mfcc(audio, lengths, *, n_mfcc: int = 13, **log_mel_kwargs):
    """audio [B, S], lengths [B] -> (MFCC [B, T, n_mfcc], frame_lengths [B]); DCT-II ortho of log-mel."""
    feats, frame_lengths = log_mel(audio, lengths, **log_mel_kwargs)
    n_mels = feats.shape[-1]
    if n_mfcc > n_mels:
        raise ValueError(f"n_mfcc={n_mfcc} must be <= n_mels={n_mels}")
    k = np.arange(n_mfcc)[:, None]
    n = np.arange(n_mels)[None, :]
    dct = np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) * np.sqrt(2.0 / n_mels)
    dct[0] /= np.sqrt(2.0)
    return feats @ jnp.asarray(dct.T.astype(np.float32)), frame_lengths


def normalize(
    feats, frame_lengths, mode: str = "utterance", *, mean=None, std=None, eps: float = 1e-5
):
    """Mean/variance normalisation over valid frames; feats [B, T, F] -> [B, T, F], 0 at padding.

    mode "utterance": statistics per utterance and feature; "global": given ``mean``/``std``
    [F] (e.g. training-set statistics) or, if omitted, statistics over all valid frames of
    the batch; "none": only zero the padding.
    """
    mask = _mask(frame_lengths, feats.shape[1])[..., None].astype(feats.dtype)  # [B, T, 1]
    if mode == "none":
        return feats * mask
    if mode == "utterance":
        count = jnp.maximum(mask.sum(axis=1, keepdims=True), 1.0)
        mu = (feats * mask).sum(axis=1, keepdims=True) / count
        var = (((feats - mu) * mask) ** 2).sum(axis=1, keepdims=True) / count
        return (feats - mu) * jax.lax.rsqrt(var + eps) * mask
    if mode == "global":
        if mean is None or std is None:
            count = jnp.maximum(mask.sum(axis=(0, 1)), 1.0)
            mean = (feats * mask).sum(axis=(0, 1)) / count
            std = jnp.sqrt((((feats - mean) * mask) ** 2).sum(axis=(0, 1)) / count)
        return (feats - mean) / (jnp.asarray(std) + eps) * mask
    raise ValueError(f"normalize mode must be 'utterance', 'global' or 'none', got {mode!r}")


def warp_mel_axis(
    key,
    feats,
    max_warp: float,
    *,
    sample_rate: int = 16000,
    fmin: float = 20.0,
    fmax: float | None = None,
    htk: bool = False,
):
    """VTLP on log-mel features (Jaitly & Hinton, 2013, in the mel domain); [B, T, F] -> same.

    Each example draws alpha uniformly in [1 - max_warp, 1 + max_warp]; channel m then reads
    the (linearly interpolated) channel whose centre frequency is f_m / alpha, so spectral
    content moves up by alpha (formants of a shorter vocal tract). Channels whose source lies
    outside the filterbank repeat the edge channel. The filterbank (sample_rate, fmin, fmax,
    htk) is the one ``log_mel`` used with the same arguments.
    """
    B, _, F = feats.shape
    fmax = sample_rate / 2.0 if fmax is None else fmax
    centres = _mel_to_hz(np.linspace(_hz_to_mel(fmin, htk), _hz_to_mel(fmax, htk), F + 2), htk)[
        1:-1
    ].astype(np.float32)
    alpha = jax.random.uniform(key, (B, 1), minval=1.0 - max_warp, maxval=1.0 + max_warp)
    pos = jnp.interp(centres[None, :] / alpha, centres, np.arange(F, dtype=np.float32))  # [B, F]
    i0 = jnp.floor(pos).astype(jnp.int32)
    i1 = jnp.minimum(i0 + 1, F - 1)
    w = (pos - i0)[:, None, :]
    take = jax.vmap(lambda f, i: f[:, i])  # feats [T, F], idx [F] -> [T, F], per example
    return (1.0 - w) * take(feats, i0) + w * take(feats, i1)


def spec_augment(
    key,
    feats,
    frame_lengths,
    *,
    num_time_masks: int = 2,
    time_mask_width: int = 10,
    num_freq_masks: int = 2,
    freq_mask_width: int = 8,
    mel_warp: float = 0.0,
):
    """SpecAugment (training only): zero random time and frequency bands; [B, T, F] -> [B, T, F].

    Each mask draws a width uniformly in [0, max width] and a start uniformly so that it lies
    inside the utterance's valid frames (time) or the F channels (frequency). ``mel_warp`` > 0
    first warps the frequency axis of log-mel features (``warp_mel_axis``, default filterbank);
    its draws come from ``fold_in(key, 1)``, so the masks are the same with or without it.
    """
    if not 0.0 <= mel_warp < 1.0:
        raise ValueError(
            f"spec_augment mel_warp must be in [0, 1) (the largest relative "
            f"frequency warp, e.g. 0.1), got {mel_warp!r}"
        )
    B, T, F = feats.shape
    kt_w, kt_s, kf_w, kf_s = jax.random.split(key, 4)
    if mel_warp:
        valid = _mask(frame_lengths, T)[..., None]
        feats = jnp.where(valid, warp_mel_axis(jax.random.fold_in(key, 1), feats, mel_warp), 0.0)
    keep = jnp.ones((B, T, F), bool)
    if num_time_masks > 0:
        w = jax.random.randint(kt_w, (B, num_time_masks), 0, time_mask_width + 1)
        w = jnp.minimum(w, frame_lengths[:, None])
        start = (
            jax.random.uniform(kt_s, (B, num_time_masks)) * (frame_lengths[:, None] - w + 1)
        ).astype(jnp.int32)
        t = jnp.arange(T)[None, None, :]
        hit = ((t >= start[..., None]) & (t < (start + w)[..., None])).any(axis=1)  # [B, T]
        keep &= ~hit[:, :, None]
    if num_freq_masks > 0:
        w = jax.random.randint(kf_w, (B, num_freq_masks), 0, min(freq_mask_width, F) + 1)
        start = (jax.random.uniform(kf_s, (B, num_freq_masks)) * (F - w + 1)).astype(jnp.int32)
        f = jnp.arange(F)[None, None, :]
        hit = ((f >= start[..., None]) & (f < (start + w)[..., None])).any(axis=1)  # [B, F]
        keep &= ~hit[:, None, :]
    return jnp.where(keep, feats, 0.0)


def extract(audio, lengths, *, kind: str = "logmel", normalize: str = "utterance", **kwargs):
    """audio [B, S], lengths [B] -> (features [B, T, F], frame_lengths [B]).

    kind "logmel" (kwargs of ``log_mel``) or "mfcc" (``n_mfcc`` + log_mel kwargs), followed by
    ``normalize(mode=normalize)``. This is what a config's ``features`` dict maps to.
    """
    if kind == "logmel":
        feats, frame_lengths = log_mel(audio, lengths, **kwargs)
    elif kind == "mfcc":
        feats, frame_lengths = mfcc(audio, lengths, **kwargs)
    else:
        raise ValueError(f"features kind must be 'logmel' or 'mfcc', got {kind!r}")
    return _normalize(feats, frame_lengths, normalize), frame_lengths


_normalize = normalize
