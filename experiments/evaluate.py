"""Score a trained run on any dataset: CER/WER (recognisers) or accuracy (classifiers).

  python -m experiments.evaluate --workdir=runs/ctc_bilstm --dataset=fsdd_digits \\
      --data_dir=/path/to/fsdd --split=test
  python -m experiments.evaluate --workdir=runs/ctc_bilstm --dataset=manifest:my_audio/list.tsv

`manifest:PATH` is a TSV of `audio path<TAB>transcript` (paths relative to the file; see
rnnbench/data/manifest.py). Prints the metrics and writes one JSON (default
<workdir>/eval_<dataset>_<split>.json) with the metrics, the run's step and every utterance's
reference and hypothesis. `--decode=beam=10,ctc_weight=0.3` decodes with other settings than
the run's own config.decode (the JSON records the settings used). `--alignments=N` (attention
encoder-decoders) also plots the teacher-forced attention weights of the split's first N
utterances next to the JSON (<stem>_align_<i>.png).
"""

import os
import re
import sys

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run directory.")
_DATASET = flags.DEFINE_string(
    "dataset", None, "A dataset name (see rnnbench.data) or manifest:PATH."
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where the dataset lives (real corpora).")
_SPLIT = flags.DEFINE_string("split", "test", "Split to score (a manifest has only 'test').")
_OUT = flags.DEFINE_string(
    "out", None, "JSON path (default <workdir>/eval_<dataset>_<split>.json)."
)
_ALIGNMENTS = flags.DEFINE_integer(
    "alignments",
    0,
    "Plot the teacher-forced attention alignments of the first N utterances (model.kind las).",
    lower_bound=0,
)
_DECODE = flags.DEFINE_list(
    "decode",
    [],
    "Decoding settings replacing the run's config.decode fields, e.g. beam=10,ctc_weight=0.3 "
    "(las: joint CTC/attention beam search) or beam=10 (ctc: prefix beam search).",
)
flags.mark_flags_as_required(["workdir", "dataset"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from rnnbench import atomic, inference, provenance, seq2seq
    from rnnbench import data as data_lib

    try:
        run = inference.load_run(_WORKDIR.value, decode=inference.parse_decode(_DECODE.value))
        dataset = data_lib.load(_DATASET.value, data_dir=_DATA_DIR.value)
        aligned = (  # first: a run without attention fails before the whole split is scored
            inference.alignments(run, dataset, _SPLIT.value, _ALIGNMENTS.value)
            if _ALIGNMENTS.value
            else []
        )
        metrics, records = inference.score(run, dataset, _SPLIT.value)
    except ValueError as e:
        sys.exit(f"error: {e}")
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", _DATASET.value).strip("_")
    out = _OUT.value or os.path.join(_WORKDIR.value, f"eval_{tag}_{_SPLIT.value}.json")
    atomic.write_json(
        out,
        {
            "workdir": _WORKDIR.value,
            "step": run.step,
            "dataset": _DATASET.value,
            "split": _SPLIT.value,
            "decode": dict(run.config.get("decode") or {}),
            "metrics": metrics,
            "utterances": records,
            "provenance": provenance.record(),
        },
        indent=1,
    )
    plots = []
    for i, (weights, tokens, ref) in enumerate(aligned):
        plots.append(f"{os.path.splitext(out)[0]}_align_{i}.png")
        title = f"{_DATASET.value} {_SPLIT.value} #{i} (step {run.step}): {ref!r}"
        seq2seq.plot_alignment(weights, plots[-1], title, tokens=tokens)
    shown = ", ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
    )
    print(f"{_DATASET.value} {_SPLIT.value}: {shown}; per-utterance hypotheses in {out}")
    if plots:
        print(f"attention alignments: {', '.join(plots)}")


if __name__ == "__main__":
    from rnnbench import errors

    errors.run(main)
