"""Spoken language understanding as a pipeline: a trained recogniser's transcripts -> a text
parser trained on the training transcripts -> meanings, scored like the direct model.

  python -m experiments.slu_pipeline --workdir=runs/slu/recogniser_lstm_voices --split=test

`--workdir` is a recogniser run (config.model.kind "ctc", e.g. `experiments/configs/slu.py:lstm
--config.model.kind=ctc`) on a corpus with meanings (synth_phrases; the run's own
--config.data.options.split, voices or phrasings). The parser (rnnbench/text_parser.py) learns
from the reference transcripts and meanings of the training split only, then parses the
recogniser's transcripts of `--split`. Writes (default <workdir>/slu_pipeline_<split>.json) the
metrics with final.json's prefixes (test_meaning_accuracy, test_intent_accuracy,
test_slot_accuracy, test_cer, test_wer; `reference_*`: the parser on the reference
transcripts, the pipeline's ceiling), the run's seed and step, and every utterance's reference
and hypothesis transcript and meaning.
"""

from __future__ import annotations

import os

from absl import app, flags, logging


def define_flags() -> None:
    """The command line (defined only when run as a program, so that importing this module, e.g.
    from the tests, does not clash with other entry points' flags)."""
    flags.DEFINE_string("workdir", None, "A recogniser's training run directory.")
    flags.DEFINE_string(
        "sweep_dir",
        None,
        "A sweep of recognisers (sweep.json): each finished run is scored, into its own "
        "<run>/slu_pipeline_<split>.json, instead of --workdir (then --out must be unset).",
    )
    flags.DEFINE_enum("split", "test", ["validation", "test"], "Split to score.")
    flags.DEFINE_string("out", None, "JSON path (default <workdir>/slu_pipeline_<split>.json).")
    flags.DEFINE_integer("parser_steps", 600, "Training steps of the text parser.")
    flags.DEFINE_integer("batch_size", 32, "Clips per forward pass of the recogniser.")


PREFIX = {"validation": "val", "test": "test"}


def run_pipeline(
    workdir: str,
    split: str = "test",
    *,
    dataset=None,
    parser_steps: int = 600,
    batch_size: int = 32,
) -> dict:
    """Scores recogniser (in `workdir`) + text parser on `split` of the run's dataset (or of
    `dataset`); returns what `main` writes."""
    from rnnbench import inference, input_pipeline, metrics, provenance, text_parser
    from rnnbench.objectives import intent
    from rnnbench.objectives.ctc import TextObjective

    run = inference.load_run(workdir)
    recogniser = isinstance(run.objective, TextObjective)  # CTC, LAS, transducer
    if not recogniser:
        raise ValueError(
            f"--workdir {workdir} trains model.kind "
            f"{run.config.model.get('kind')!r}; the pipeline needs a recogniser "
            "(a run with --config.model.kind=ctc)"
        )
    dataset = dataset or input_pipeline.load_dataset(run.config)
    if split not in dataset.splits:
        raise ValueError(
            f"dataset {dataset.name} has no split {split!r}; it has {sorted(dataset.splits)}"
        )
    parser = text_parser.TextParser(steps=parser_steps, seed=int(run.config.seed))
    intent.check_meanings(dataset, parser.codec)
    train = dataset.splits["train"]
    parser.fit(train.transcripts, train.meanings)

    sp = dataset.splits[split]
    hyps = inference.predict(run, sp.audio, batch_size=batch_size)
    scores = parser.score(hyps, sp.meanings)
    ceiling = parser.score(sp.transcripts, sp.meanings)
    parsed = parser.parse_all(hyps)
    fmt = parser.codec.format
    p = PREFIX[split]
    out = {f"{p}_{k}": v for k, v in scores.items()}
    out.update({f"{p}_{k}": v for k, v in metrics.error_rates(sp.transcripts, hyps).items()})
    out.update({f"{p}_reference_{k}": v for k, v in ceiling.items()})
    out.update(
        workdir=workdir,
        step=run.step,
        seed=int(run.config.seed),
        dataset=dataset.name,
        split_kind=(run.config.get("data") or {}).get("options", {}).get("split", "voices"),
        split=split,
        examples=len(sp),
        objective="intent_pipeline",
        primary_metric="meaning_accuracy",
        recogniser_kind=run.config.model.get("kind"),
        cell=run.config.model.get("cell"),
        parser={
            "steps": parser.steps,
            "hidden": parser.hidden,
            "seed": parser.seed,
            "train_examples": len(train),
            "final_loss": parser.losses[-1],
        },
        provenance=provenance.record(),
        utterances=[
            {
                "index": i,
                "speaker": sp.speakers[i],
                "reference": sp.transcripts[i],
                "hypothesis": h,
                "meaning": fmt(sp.meanings[i]),
                "parsed": fmt(m),
                "correct": m == sp.meanings[i],
            }
            for i, (h, m) in enumerate(zip(hyps, parsed))
        ],
    )
    return out


def score_and_write(workdir: str, out: str | None = None) -> dict:
    """run_pipeline on `workdir` with the command line's settings, written (atomically) to
    `out` (default <workdir>/slu_pipeline_<split>.json); prints one summary line."""
    from rnnbench import atomic

    split = flags.FLAGS.split
    result = run_pipeline(
        workdir,
        split,
        parser_steps=flags.FLAGS.parser_steps,
        batch_size=flags.FLAGS.batch_size,
    )
    path = out or os.path.join(workdir, f"slu_pipeline_{split}.json")
    atomic.write_json(path, result, indent=1)
    p = PREFIX[split]
    print(
        f"{result['dataset']} ({result['split_kind']}) {split}: exact meaning "
        f"{result[f'{p}_meaning_accuracy']:.4f} (parser on reference transcripts "
        f"{result[f'{p}_reference_meaning_accuracy']:.4f}), intent "
        f"{result[f'{p}_intent_accuracy']:.4f}, CER {result[f'{p}_cer']:.4f}; "
        f"per-utterance results in {path}",
        flush=True,
    )
    return result


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    workdir, sweep_dir = flags.FLAGS.workdir, flags.FLAGS.sweep_dir
    if bool(workdir) == bool(sweep_dir):
        raise app.UsageError("give exactly one of --workdir and --sweep_dir")
    if sweep_dir and flags.FLAGS.out:
        raise app.UsageError("--out names one file; with --sweep_dir each run gets its own")
    if workdir:
        score_and_write(workdir, flags.FLAGS.out)
        return
    from rnnbench import grid

    runs = grid.finished_runs(sweep_dir)
    if not runs:
        raise ValueError(f"--sweep_dir={sweep_dir}: no run has finished (no final.json)")
    for run in runs:
        score_and_write(run)


if __name__ == "__main__":
    from rnnbench import errors

    define_flags()
    errors.run(main)
