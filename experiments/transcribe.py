"""Transcribe (or classify) your own audio with a trained run.

  python -m experiments.transcribe --workdir=runs/ctc_bilstm a.wav b.flac ...

Prints one line per file, `path<TAB>transcript`, in the order given. Any sample rate and channel
count soundfile reads is mixed to mono and resampled to 16 kHz. A file that cannot be read is
reported on stderr (`error: <file>: <why>`) and the others are still transcribed; the exit
status is 1 if any file failed. Decoding follows the run's config (`config.decode`); `--decode`
replaces some of its fields, e.g. `--decode=beam=10,ctc_weight=0.3` for an attention model
trained with a CTC head (joint beam search) or `--decode=beam=10` for a CTC model.
"""

import sys

from absl import app, flags

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "A training run directory (config.json, checkpoints/)."
)
_BATCH = flags.DEFINE_integer("batch_size", 16, "Files per forward pass.")
_DECODE = flags.DEFINE_list(
    "decode",
    [],
    "Decoding settings replacing the run's config.decode fields, e.g. beam=10,ctc_weight=0.3.",
)
flags.mark_flags_as_required(["workdir"])


def main(argv):
    paths = argv[1:]
    if not paths:
        raise app.UsageError("give one or more audio files after the flags")
    from rnnbench import inference
    from rnnbench.data import audio

    try:
        run = inference.load_run(_WORKDIR.value, decode=inference.parse_decode(_DECODE.value))
    except ValueError as e:
        sys.exit(f"error: {e}")
    clips, kept, failed = [], [], 0
    for i, p in enumerate(paths):
        try:
            clips.append(audio.read_wav(p))
            kept.append(i)
        except (audio.AudioError, ValueError) as e:
            failed += 1
            print(f"error: {p}: {e}", file=sys.stderr)
    texts = inference.predict(run, clips, batch_size=_BATCH.value) if clips else []
    for i, text in zip(kept, texts):
        print(f"{paths[i]}\t{text}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    from rnnbench import errors

    errors.run(main)
