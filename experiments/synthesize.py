"""Say text with a trained TTS run: Tacotron mels, then Griffin-Lim, then a 16 kHz WAV.

  python -m experiments.synthesize --workdir=runs/tts_lstm "set a timer for five minutes" \\
      --out=a.wav
  python -m experiments.synthesize --workdir=runs/tts_lstm "call mom" "volume up" --out=wavs/

One text: --out is the WAV file. Several: --out is a directory, and they become 000.wav,
001.wav, ... in the order given. Text is lower-cased, numbers 0-99 are spelled out ("5" ->
"five") and punctuation becomes spaces; any other character outside the run's alphabet is an
error naming it. Decoding follows `config.synthesis` of the run (max_seconds, stop_threshold,
prenet_dropout, griffin_lim_iters, power; see rnnbench/synthesis.py); files are written
atomically (a kill never leaves half a WAV). Prints one line per text: path, seconds, and
whether the stop token ended it.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "A TTS training run (config.json, checkpoints/).")
_OUT = flags.DEFINE_string("out", None, "WAV path (one text) or directory (several).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the prenet dropout at inference.")
flags.mark_flags_as_required(["workdir", "out"])


def output_paths(out: str, n: int) -> list[str]:
    if n == 1:
        if os.path.isdir(out):
            raise ValueError(f"--out={out} is a directory; give a .wav path for one text")
        return [out]
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out={out} must be a directory for {n} texts")
    return [os.path.join(out, f"{i:03d}.wav") for i in range(n)]


def main(argv):
    texts = argv[1:]
    if not texts:
        raise app.UsageError("give one or more texts after the flags")
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    from rnnbench import synthesis

    try:
        paths = output_paths(_OUT.value, len(texts))
        synth = synthesis.load(_WORKDIR.value)
        audio, out = synthesis.synthesize(synth, texts, seed=_SEED.value)
    except ValueError as e:
        sys.exit(f"error: {e}")
    for path, x, stopped in zip(paths, audio, out["stopped"]):
        synthesis.write_wav(path, x)
        how = "stop token" if stopped else "max_seconds reached without a stop"
        print(f"{path}\t{x.shape[0] / 16000:.2f} s\t{how}")


if __name__ == "__main__":
    from rnnbench import errors

    errors.run(main)
