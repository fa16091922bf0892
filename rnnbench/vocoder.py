"""Audio from log-mel spectrograms without a neural vocoder: pseudo-inverse mel, Griffin-Lim.

  stft(audio, frames)                 [..., S] -> complex [..., T, n_fft // 2 + 1]
  istft(spec, frames, length)         least-squares overlap-add inverse of `stft`
  mel_to_magnitude(log_mel, frames)   log-mel [..., T, M] -> linear magnitude [..., T, F]
  griffin_lim(magnitude, frames)      magnitude -> audio (fast Griffin-Lim, jit-compiled)
  log_mel_to_audio(log_mel, features) both, from the settings of a config's `features`
  spectral_convergence(magnitude, audio, frames)   ||S - |STFT(x)| ||_F / ||S||_F

The STFT is the one `rnnbench.features.log_mel` computes (same framing, window and FFT size),
so a log-mel the model predicts inverts through the same transform that made its targets:
frame t covers samples [t * hop, t * hop + win) with no centre padding, a periodic Hann window
of length win, zero-padded to n_fft. The mel filterbank is `features.mel_matrix`; its
Moore-Penrose pseudo-inverse maps mel power back to linear power (clipped at 0).

Griffin-Lim (Griffin & Lim 1984) with the momentum of Perraudin, Balazs & Søndergaard 2013
("A fast Griffin-Lim algorithm"), as librosa.griffinlim implements it.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rnnbench import features


@dataclasses.dataclass(frozen=True)
class Frames:
    """STFT framing in samples: window `win`, hop `hop`, FFT size `n_fft` (>= win)."""

    win: int
    hop: int
    n_fft: int

    def __post_init__(self):
        if not 1 <= self.hop <= self.win <= self.n_fft:
            raise ValueError(
                f"STFT framing needs 1 <= hop <= win <= n_fft, got hop={self.hop}, "
                f"win={self.win}, n_fft={self.n_fft}"
            )

    @classmethod
    def from_features(cls, features_config, sample_rate: int = 16000) -> Frames:
        """The framing `features.log_mel` uses for a config's `features` (win_ms, hop_ms,
        n_fft)."""
        f = dict(features_config)
        win, hop, n_fft = features.frame_params(
            sample_rate, f.get("win_ms", 25.0), f.get("hop_ms", 10.0), f.get("n_fft")
        )
        return cls(win, hop, n_fft)

    @property
    def window(self) -> np.ndarray:
        """Periodic Hann window [win], float32 (the one `features.log_mel` uses)."""
        return features.hann_window(self.win)

    def num_frames(self, samples: int) -> int:
        return 1 + (samples - self.win) // self.hop

    def num_samples(self, frames: int) -> int:
        """Samples that `frames` frames cover."""
        return (frames - 1) * self.hop + self.win


def stft(audio, frames: Frames):
    """audio [..., S] float -> complex64 [..., T, n_fft // 2 + 1], T = 1 + (S - win) // hop."""
    audio = jnp.asarray(audio, jnp.float32)
    t = frames.num_frames(audio.shape[-1])
    if t < 1:
        raise ValueError(
            f"audio of {audio.shape[-1]} samples is shorter than one window ({frames.win})"
        )
    return features.stft(audio, frames.win, frames.hop, frames.n_fft)


def istft(spec, frames: Frames):
    """complex [..., T, F] -> audio [..., (T - 1) * hop + win]: the signal whose `stft` is
    nearest `spec` in the least-squares sense (windowed overlap-add divided by the summed
    squared window; samples no window covers are 0)."""
    t = spec.shape[-2]
    w = jnp.asarray(frames.window)
    pieces = jnp.fft.irfft(spec, n=frames.n_fft, axis=-1)[..., : frames.win] * w  # [..., T, win]
    n = frames.num_samples(t)
    idx = (np.arange(t)[:, None] * frames.hop + np.arange(frames.win)[None, :]).reshape(-1)
    lead = pieces.shape[:-2]
    out = (
        jnp.zeros(lead + (n,), pieces.dtype)
        .at[..., idx]
        .add(pieces.reshape(lead + (t * frames.win,)))
    )
    norm = np.zeros(n, np.float32)
    np.add.at(norm, idx, np.tile(frames.window**2, t))
    return out / jnp.asarray(np.where(norm > 1e-8, norm, 1.0))


def mel_to_magnitude(
    log_mel,
    frames: Frames,
    *,
    sample_rate: int = 16000,
    fmin: float = 20.0,
    fmax: float | None = None,
    htk: bool = False,
):
    """log-mel [..., T, M] (natural log of mel power + `features.LOG_EPS`, as
    `features.log_mel` makes it) -> linear magnitude [..., T, n_fft // 2 + 1] through the
    pseudo-inverse of the mel filterbank (negative power clipped to 0)."""
    m = log_mel.shape[-1]
    fb = features.mel_matrix(sample_rate, frames.n_fft, m, fmin, fmax, htk)  # [F, M]
    inverse = jnp.asarray(np.linalg.pinv(fb.astype(np.float64)).astype(np.float32))  # [M, F]
    mel_power = jnp.maximum(jnp.exp(jnp.asarray(log_mel, jnp.float32)) - features.LOG_EPS, 0.0)
    return jnp.sqrt(jnp.maximum(mel_power @ inverse, 0.0))


@functools.partial(jax.jit, static_argnames=("frames", "n_iter"))
def _griffin_lim(magnitude, angles, momentum, *, frames: Frames, n_iter: int):
    def body(_, carry):
        angles, rebuilt = carry
        previous = rebuilt
        rebuilt = stft(istft(magnitude * angles, frames), frames)
        angles = rebuilt - (momentum / (1.0 + momentum)) * previous
        return angles / (jnp.abs(angles) + 1e-16), rebuilt

    angles, _ = jax.lax.fori_loop(0, n_iter, body, (angles, jnp.zeros_like(angles)))
    return istft(magnitude * angles, frames)


def griffin_lim(
    magnitude,
    frames: Frames,
    *,
    n_iter: int = 60,
    momentum: float = 0.99,
    key: jax.Array | None = None,
):
    """magnitude [..., T, F] -> audio [..., (T - 1) * hop + win] whose STFT magnitude is close
    to it. Phases start at 0 (`key=None`) or uniformly random; `momentum` 0 is the classic
    algorithm, 0.99 the fast one (Perraudin et al. 2013). Jit-compiled per shape and n_iter."""
    magnitude = jnp.asarray(magnitude, jnp.float32)
    if magnitude.shape[-1] != frames.n_fft // 2 + 1:
        raise ValueError(
            f"magnitude has {magnitude.shape[-1]} frequency bins; n_fft="
            f"{frames.n_fft} needs {frames.n_fft // 2 + 1}"
        )
    if n_iter < 0 or not 0.0 <= momentum < 1.0:
        raise ValueError(f"need n_iter >= 0 and momentum in [0, 1), got {n_iter}, {momentum}")
    if key is None:
        angles = jnp.ones(magnitude.shape, jnp.complex64)
    else:
        angles = jnp.exp(2j * jnp.pi * jax.random.uniform(key, magnitude.shape))
    return _griffin_lim(
        magnitude, angles.astype(jnp.complex64), jnp.float32(momentum), frames=frames, n_iter=n_iter
    )


def log_mel_to_audio(
    log_mel,
    features_config,
    *,
    sample_rate: int = 16000,
    n_iter: int = 60,
    momentum: float = 0.99,
    power: float = 1.0,
) -> np.ndarray:
    """log-mel [T, M] or [B, T, M] made with the config's `features` -> float32 audio in
    [-1, 1] ([S] or [B, S]). `power` > 1 sharpens the magnitude before Griffin-Lim (Tacotron 1
    used 1.5), which reduces its phasey noise."""
    f = dict(features_config)
    if f.get("kind", "logmel") != "logmel":
        raise ValueError(f"features.kind must be 'logmel' to invert, got {f.get('kind')!r}")
    frames = Frames.from_features(f, sample_rate)
    mag = mel_to_magnitude(
        log_mel,
        frames,
        sample_rate=sample_rate,
        fmin=f.get("fmin", 20.0),
        fmax=f.get("fmax"),
        htk=f.get("htk", False),
    )
    audio = np.asarray(griffin_lim(mag**power, frames, n_iter=n_iter, momentum=momentum))
    peak = np.abs(audio).max(axis=-1, keepdims=True)
    return np.where(peak > 1.0, audio / np.maximum(peak, 1e-9), audio).astype(np.float32)


def spectral_convergence(magnitude, audio, frames: Frames) -> float:
    """||S - |STFT(audio)| ||_F / ||S||_F over the frames both have (0 = the same magnitude)."""
    s = np.asarray(magnitude, np.float64)
    rebuilt = np.abs(np.asarray(stft(audio, frames), np.complex128))
    t = min(s.shape[-2], rebuilt.shape[-2])
    s, rebuilt = s[..., :t, :], rebuilt[..., :t, :]
    return float(np.linalg.norm(s - rebuilt) / max(np.linalg.norm(s), 1e-12))
