"""CMU Flite as a second synthesiser: voices built from recordings of real people.

eSpeak NG's voices are formant synthesis (rules, no recordings); Flite's ``awb``, ``rms`` and
``slt`` are statistical parametric (clustergen) voices trained on recordings of three people
(Scottish-English male, US male, US female) and ``kal``/``kal16`` are diphone voices cut from
recordings of one US male (8 and 16 kHz). ``synth("seven", "slt", 1.1)`` returns float32 [n]
audio at 16 kHz. Flite is a program, not a PyPI package (Debian/Ubuntu: ``apt install flite``);
rnnbench uses it only for the ``flite`` augment option (rnnbench/data/augment.py), never for
the default corpora. It is deterministic: the same text, voice and stretch give the same bytes.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import wave

import numpy as np

from rnnbench import errors
from rnnbench.data import SAMPLE_RATE
from rnnbench.data.audio import resample

VOICES = ("awb", "kal", "kal16", "rms", "slt")
STRETCH_RANGE = (0.8, 1.3)  # duration_stretch: > 1 speaks slower


class FliteError(RuntimeError):
    """The flite program failed."""


class FliteMissing(errors.ConfigError):
    """The ``flite`` augment option was asked for where the flite program is not installed."""


def program() -> str:
    """Path of the ``flite`` program; FliteMissing saying how to install it when absent."""
    path = shutil.which("flite")
    if path is None:
        raise FliteMissing(
            "the 'flite' augment option needs the flite program (CMU Flite), not found on "
            "PATH; install it (Debian/Ubuntu: apt install flite) or leave 'flite' out of "
            "data.options.augment"
        )
    return path


@functools.cache
def version() -> str:
    """``flite --version``'s version line (enters the corpus spec: another Flite, other bytes)."""
    out = subprocess.run([program(), "--version"], capture_output=True, text=True)  # exits 1
    text = out.stdout + out.stderr
    lines = [ln.strip() for ln in text.splitlines() if "version" in ln]
    if not lines:
        raise FliteError(f"cannot read flite's version from `flite --version`: {text!r}")
    return lines[0]


def draw(rng: np.random.Generator) -> tuple[str, float]:
    """A voice of VOICES and a duration stretch uniform in STRETCH_RANGE."""
    return VOICES[int(rng.integers(len(VOICES)))], float(rng.uniform(*STRETCH_RANGE))


def synth(text: str, voice: str, duration_stretch: float = 1.0) -> np.ndarray:
    """``text`` spoken by Flite's ``voice``: float32 [n] in [-1, 1] at 16 kHz (not trimmed)."""
    if voice not in VOICES:
        raise ValueError(f"flite voice must be one of {VOICES}, got {voice!r}")
    with tempfile.TemporaryDirectory(prefix="rnnbench-flite-") as tmp:
        path = os.path.join(tmp, "out.wav")
        cmd = [program(), "-voice", voice, "--setf", f"duration_stretch={duration_stretch:.4f}"]
        done = subprocess.run([*cmd, "-t", text, "-o", path], capture_output=True, text=True)
        if done.returncode != 0 or not os.path.exists(path):
            raise FliteError(
                f"flite failed on {text!r} with voice {voice!r} (exit {done.returncode}): "
                f"{done.stderr.strip()[-300:]}"
            )
        with wave.open(path, "rb") as w:
            rate, width = w.getframerate(), w.getsampwidth()
            pcm = w.readframes(w.getnframes())
    if width != 2:
        raise FliteError(f"flite wrote {8 * width}-bit audio, expected 16-bit PCM")
    x = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0
    return resample(x, rate, SAMPLE_RATE)
