"""A trained TTS run restored for synthesis: text -> mel frames -> audio.

  synth = load(workdir)                      # config.json + newest checkpoint
  audio, out = synthesize(synth, texts)      # float32 audio per text, and what generate said
  write_wav(path, audio[0])                  # 16-bit PCM, atomic

Text is lower-cased, numbers 0-99 are spelled out and punctuation becomes spaces
(`normalize_text`); decoding follows the run's `config.synthesis` (max_seconds,
stop_threshold, prenet_dropout, griffin_lim_iters, power; defaults in SYNTHESIS_DEFAULTS), and
audio comes from Griffin-Lim with the STFT the run's targets were made with (rnnbench/vocoder.py).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import numpy as np
import soundfile as sf
from flax import nnx

from rnnbench import atomic, inference, train, tts, vocoder
from rnnbench import data as data_lib
from rnnbench.data import phrases
from rnnbench.data.audio import to_int16
from rnnbench.objectives import tts as tts_objective  # noqa: F401  (registers "tts")

SYNTHESIS_DEFAULTS = {
    "max_seconds": 8.0,
    "stop_threshold": 0.5,
    "prenet_dropout": True,
    "griffin_lim_iters": 60,
    "power": 1.2,
}


@dataclasses.dataclass
class Synthesizer:
    """A restored TTS run: its config, alphabet, model (params merged) and the eval step."""

    run: Any  # rnnbench.inference.TrainedRun
    model: Any  # rnnbench.tts.Tacotron
    settings: dict

    @property
    def config(self):
        return self.run.config


def load(workdir: str, step: int | None = None) -> Synthesizer:
    """Restores the checkpoint of `step` (None: the newest) of the TTS run in `workdir`
    (ValueError if it is not one or has no such checkpoint)."""
    run = inference.load_run(workdir, step)
    if run.config.model.get("kind") != "tts":
        raise ValueError(
            f"--workdir {workdir} is a {run.config.model.get('kind')!r} run, not a "
            f"TTS run (config.model.kind 'tts')"
        )
    stub = data_lib.Dataset(run.config.get("dataset", "?"), "ctc", run.classes, {})
    graphdef, _, _, _ = train.init_state(run.config, stub, run.objective)
    settings = dict(SYNTHESIS_DEFAULTS, **dict(run.config.get("synthesis") or {}))
    return Synthesizer(run, nnx.merge(graphdef, run.params), settings)


def normalize_text(text: str) -> str:
    """Lower case, numbers 0..99 in words, punctuation to spaces, single spaces."""
    text = text.lower()
    text = re.sub(
        r"\d+",
        lambda m: phrases.say_number(int(m.group())) if int(m.group()) < 100 else m.group(),
        text,
    )
    text = re.sub(r"[.,!?;:\"()\-]", " ", text)
    return " ".join(text.split())


def encode(synth: Synthesizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> (ids [B, U] int32, 0-padded to a multiple of 8; lengths [B])."""
    alphabet = data_lib.Dataset("tts", "ctc", synth.run.classes, {})
    ids = []
    for text in texts:
        clean = normalize_text(text)
        if not clean:
            raise ValueError(f"text {text!r} has nothing to say")
        try:
            ids.append(alphabet.encode(clean))
        except ValueError:
            bad = sorted(set(clean) - set(synth.run.classes))
            raise ValueError(
                f"text {text!r} has characters {bad} outside the run's alphabet "
                f"{''.join(synth.run.classes)!r}"
            ) from None
    width = -(-max(len(x) for x in ids) // 8) * 8
    out = np.zeros((len(ids), width), np.int32)
    for i, x in enumerate(ids):
        out[i, : len(x)] = x
    return out, np.array([len(x) for x in ids], np.int32)


def generate(synth: Synthesizer, texts: list[str], *, seed: int = 0) -> dict:
    """Free-running synthesis of `texts` in one batch -> numpy {"log_mel" [B, T, M] (natural
    log of mel power, 0 past each length), "lengths" [B] frames, "stopped" [B] bool,
    "alignments" [B, steps, U], "text_lengths" [B]} (see `rnnbench.tts.generate`)."""
    s, cfg = synth.settings, synth.config
    ids, lengths = encode(synth, texts)
    max_steps = tts.max_steps_for(
        s["max_seconds"], cfg.features.get("hop_ms", 10.0), synth.model.reduction
    )
    key = jax.random.key(seed) if s["prenet_dropout"] else None
    out = jax.device_get(
        synth.model.generate(
            ids, lengths, max_steps=max_steps, key=key, stop_threshold=s["stop_threshold"]
        )
    )
    mask = np.arange(out["mel"].shape[1])[None, :] < out["lengths"][:, None]
    log_mel = np.where(mask[..., None], tts.denormalize_mels(out["mel"]), 0.0)
    return {
        "log_mel": log_mel.astype(np.float32),
        "lengths": out["lengths"],
        "stopped": out["lengths"] < max_steps * synth.model.reduction,
        "alignments": out["alignments"],
        "text_lengths": lengths,
    }


def to_audio(synth: Synthesizer, log_mel: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """log-mel [B, T, M], lengths [B] -> float32 audio per utterance (Griffin-Lim with the run's
    STFT). The batch shares one padded shape (one compilation); padding is silence, cut off."""
    frames = vocoder.Frames.from_features(synth.config.features)
    width = max(int(lengths.max()), 1)
    width = -(-width // 40) * 40
    padded = np.full((log_mel.shape[0], width, log_mel.shape[2]), tts.MEL_FLOOR, np.float32)
    for i, n in enumerate(lengths):
        padded[i, :n] = log_mel[i, :n]
    audio = vocoder.log_mel_to_audio(
        padded,
        synth.config.features,
        n_iter=synth.settings["griffin_lim_iters"],
        power=synth.settings["power"],
    )
    return [
        audio[i, : frames.num_samples(int(n))] if n > 0 else np.zeros(0, np.float32)
        for i, n in enumerate(lengths)
    ]


def write_wav(path: str, audio: np.ndarray, sample_rate: int = 16000) -> None:
    """float [-1, 1] audio -> 16-bit PCM WAV at `path`, atomically."""
    with atomic.replacing(path) as tmp:
        sf.write(tmp, to_int16(audio), sample_rate, subtype="PCM_16", format="WAV")


def synthesize(synth: Synthesizer, texts: list[str], *, seed: int = 0) -> tuple[list, dict]:
    """Texts -> (float32 audio per text, the `generate` outputs)."""
    out = generate(synth, texts, seed=seed)
    return to_audio(synth, out["log_mel"], out["lengths"]), out
