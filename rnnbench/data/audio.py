"""WAV reading, resampling and int16 conversion shared by the loaders.

Policy for unusual files (every error names the file):
- any sample rate: resampled to the target rate with ``scipy.signal.resample_poly``;
- any bit depth soundfile reads (16/24/32-bit PCM, float): converted to int16;
- stereo / multi-channel: down-mixed to mono by averaging the channels;
- float samples outside [-1, 1]: clipped to full scale (int16);
- empty (0 frames), unreadable/corrupt, or holding non-finite samples (NaN/inf in a float WAV):
  ``AudioError`` (a ``DataError``, so a ``ValueError``), never a silent conversion.

The loaders take ``on_error="raise"`` (default: the first bad file stops the load, named) or
``on_error="skip"`` (bad files are left out, one warning counts them, and the dataset's
``skipped_files`` lists them, so that a run records them in final.json). Set it in a config with
``c.data.options.on_error = "skip"``.
"""

from __future__ import annotations

import functools
import math
import os
import warnings

import numpy as np
import scipy.signal
import soundfile as sf

from rnnbench.errors import DataError

SAMPLE_RATE = 16000
ON_ERROR = ("raise", "skip")


class AudioError(DataError):
    """A WAV file is corrupt, empty, non-finite or otherwise unusable; the message names it."""


@functools.lru_cache(maxsize=16)
def _fir(up: int, down: int) -> np.ndarray:
    """resample_poly's default anti-aliasing filter (Kaiser, beta 5), designed once per ratio."""
    max_rate = max(up, down)
    return scipy.signal.firwin(20 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def resample(x: np.ndarray, from_rate: int, to_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a 1-D signal [n] (any dtype) -> float32 [ceil(n * to_rate / from_rate)]."""
    x = np.asarray(x, np.float32)
    if from_rate == to_rate:
        return x
    g = math.gcd(int(from_rate), int(to_rate))
    up, down = int(to_rate) // g, int(from_rate) // g
    return scipy.signal.resample_poly(x, up, down, window=_fir(up, down)).astype(np.float32)


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float [-1, 1] samples -> int16, clipped."""
    return np.clip(np.round(np.asarray(x) * 32768.0), -32768, 32767).astype(np.int16)


def read_wav(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file -> int16 [n] mono at ``sample_rate`` (see module policy)."""
    try:
        x, rate = sf.read(os.fspath(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        raise AudioError(f"cannot read audio file {path}: {e}") from e
    if x.shape[0] == 0:
        raise AudioError(f"audio file {path} is empty (0 samples)")
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argwhere(bad)[0, 0])
        raise AudioError(
            f"audio file {path} has {int(bad.sum())} non-finite sample(s) (NaN or "
            f"inf; first at sample {first}, {first / rate:.3f} s); fix or remove "
            "the file, or load with on_error='skip' to leave it out"
        )
    x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    return to_int16(resample(x, rate, sample_rate))


def read_many(paths, sample_rate: int = SAMPLE_RATE, *, on_error: str = "raise"):
    """Read ``paths`` -> (list of int16 arrays, kept indices, skipped paths).

    on_error="raise" re-raises the first ``AudioError``; "skip" drops bad files and
    emits one warning that counts them and names the first.
    """
    if on_error not in ON_ERROR:
        raise DataError(
            f"on_error must be one of {ON_ERROR}, got {on_error!r} (set with "
            "--config.data.options.on_error)"
        )
    out, kept, bad, skipped = [], [], [], []
    for i, p in enumerate(paths):
        try:
            out.append(read_wav(p, sample_rate))
            kept.append(i)
        except AudioError as e:
            if on_error == "raise":
                raise
            bad.append(str(e))
            skipped.append(os.fspath(p))
    if bad:
        warnings.warn(
            f"skipped {len(bad)} unreadable or unusable audio file(s); first: {bad[0]}",
            stacklevel=2,
        )
    return out, kept, skipped


def with_skipped(dataset, skipped: list[str]):
    """`dataset` with `skipped_files` (paths left out by on_error="skip"), which a run copies
    into its final.json."""
    dataset.skipped_files = list(skipped)
    return dataset


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> str:
    """``cache_dir`` if given, else ``$RNNBENCH_CACHE``, else ``~/.cache/rnnbench``."""
    if cache_dir is not None:
        return os.fspath(cache_dir)
    return os.environ.get("RNNBENCH_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "rnnbench"
    )
