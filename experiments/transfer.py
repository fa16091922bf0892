"""Synthetic-to-real transfer table: models trained only on `synth_commands`, scored on real speech.

  RNNBENCH_FSDD_DIR=/path/to/fsdd python -m experiments.transfer --workdir=runs/transfer
  python -m experiments.transfer ... --speech_commands_dir=/path/to/speech_commands_v0.02
  python -m experiments.transfer --render_only      # results/transfer.md again from the JSON

For each row of experiments/configs/transfer.py (a corpus recipe: augmentation options of
synth_commands, and the on-device mel warp) it trains (or reuses, in <workdir>/p<protocol>/<row>)
one model per protocol the row lists, then scores it on real recordings:

- 35-word models (synth_commands protocol 35, which includes "zero".."nine"): FSDD digit d is
  the class "zero".."nine" of the 35 (`fsdd_targets`). Two accuracies: over all 35 words (the
  model may answer any word) and over the 10 digit words only (argmax of the 10 digit logits: the
  task the FSDD-trained reference solves). On the official FSDD test takes (0-4, 300 clips, the
  reference's test set) and on all 3,000 recordings (none of which any synthetic model heard).
  With --speech_commands_dir: the official test clips of the 35 words, over all 35.
- 12-class models (the main job's protocol): FSDD digits are not commands, so the right 12-class
  answer for every FSDD clip is `_unknown_` (the synthetic `_unknown_` words include the
  digits); with --speech_commands_dir, the Speech Commands 12-class test split (TF recipe).
- the reference: the same model and steps trained on FSDD itself (official split), tested on
  the same 300 clips; its speakers are the test speakers (FSDD's official split is by take), which
  the synthetic models never heard.

Clips are scored as recorded (FSDD: trimmed words of 0.14-2.3 s, 8 kHz resampled to 16 kHz),
exactly as the FSDD loader gives them to the reference model. Writes <out>.json and <out>.md
atomically; the Markdown header names the command that made it and the provenance record.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import time

from absl import app, flags


def define_flags() -> None:
    """The command line (defined only when run as a program, so that importing this module, e.g.
    from the tests, does not clash with other entry points' flags)."""
    flags.DEFINE_string("workdir", "runs/transfer", "Where the runs live.")
    flags.DEFINE_string("out", "results/transfer", "Output path without extension.")
    flags.DEFINE_string("fsdd_dir", None, "FSDD directory (default $RNNBENCH_FSDD_DIR).")
    flags.DEFINE_string(
        "speech_commands_dir", None, "An extracted Speech Commands directory (optional)."
    )
    flags.DEFINE_list("rows", None, "Rows of experiments/configs/transfer.py (default all).")
    flags.DEFINE_string("variant", "gru", "Encoder variant (experiments/configs).")
    flags.DEFINE_integer(
        "num_steps",
        None,
        "Training steps (default: the config's); warmup becomes at most a tenth of them.",
    )
    flags.DEFINE_bool("render_only", False, "Re-render <out>.md from <out>.json.")


SCORES_FILE = "transfer_scores.json"
SCORER_VERSION = 2  # part of the scores' cache key: a new scorer rescores every run


# ----------------------------------------------------------------------------- label mapping


def fsdd_targets(fsdd_labels, classes: list[str]):
    """FSDD digit ids (0 = "zero" .. 9 = "nine") -> ids of the same words in `classes`."""
    import numpy as np

    from rnnbench.data import DIGIT_WORDS

    missing = [w for w in DIGIT_WORDS if w not in classes]
    if missing:
        raise ValueError(
            f"the model's classes lack the digit words {missing}; FSDD digits need "
            f"a 35-word model (synth_commands protocol 35)"
        )
    table = np.array([classes.index(w) for w in DIGIT_WORDS], np.int32)
    return table[np.asarray(fsdd_labels, np.int64)]


def accuracies(logits, targets, subset=None) -> tuple[int, int]:
    """(correct, total) of argmax over all classes, or over the class ids in `subset`."""
    import numpy as np

    logits = np.asarray(logits)
    if subset is not None:
        subset = np.asarray(subset)
        predicted = subset[np.argmax(logits[:, subset], axis=-1)]
    else:
        predicted = np.argmax(logits, axis=-1)
    return int((predicted == np.asarray(targets)).sum()), len(targets)


# ----------------------------------------------------------------------------- models


def logits_fn(run):
    """A function int16 clips -> logits [N, classes] for a restored run (inference.load_run)."""
    import jax
    import numpy as np
    from flax import nnx

    from rnnbench import data as data_lib
    from rnnbench import precision, train

    stub = data_lib.Dataset("inference", "classify", run.classes, {})
    graphdef = train.init_state(run.config, stub, run.objective)[0]
    policy = run.config.get("precision", precision.DEFAULT)

    @jax.jit
    def forward(params, audio, lengths):
        model = nnx.merge(graphdef, params)
        with precision.scope(policy):
            batch = {"audio": audio, "audio_lengths": lengths}
            feats, flen = train.compute_features(run.config, batch, None)
            logits, _ = run.objective.forward(model, feats, flen, batch, None)
        return logits

    def apply(clips, batch_size: int = 64):
        order = np.argsort([a.shape[0] for a in clips], kind="stable")  # little padding
        out = np.zeros((len(clips), len(run.classes)), np.float32)
        for s in range(0, len(clips), batch_size):
            rows = order[s : s + batch_size]
            width = -(-max(clips[i].shape[0] for i in rows) // 8000) * 8000  # few compiles
            audio = np.zeros((batch_size, width), np.float32)
            lengths = np.full((batch_size,), width, np.int32)
            for r, i in enumerate(rows):
                audio[r, : clips[i].shape[0]] = clips[i].astype(np.float32) / 32768.0
                lengths[r] = clips[i].shape[0]
            out[rows] = np.asarray(forward(run.params, audio, lengths))[: len(rows)]
        return out

    return apply


def _pct(counts) -> dict | None:
    return (
        None
        if counts is None
        else {"correct": counts[0], "total": counts[1], "accuracy": counts[0] / max(counts[1], 1)}
    )


def score_35(logits, fsdd, sc) -> dict:
    """Scores of a 35-word model (see the module docstring). `fsdd`/`sc`: {split: (clips, ids)}
    with ids already in the model's classes; `logits(clips)` gives [N, 35]."""
    from rnnbench.data import DIGIT_WORDS
    from rnnbench.data.synth import WORDS_35

    digits = [WORDS_35.index(w) for w in DIGIT_WORDS]
    out = {}
    for name, (clips, targets) in fsdd.items():
        lg = logits(clips)
        out[f"fsdd_{name}_35"] = _pct(accuracies(lg, targets))
        out[f"fsdd_{name}_digits"] = _pct(accuracies(lg, targets, digits))
    if sc:
        clips, targets = sc["test"]
        out["sc_test"] = _pct(accuracies(logits(clips), targets))
    return out


def score_12(logits, fsdd, sc) -> dict:
    """Scores of a 12-class model: FSDD clips all as `_unknown_`, Speech Commands 12-class."""
    from rnnbench.data.synth import CLASSES_12

    out = {}
    for name, (clips, _) in fsdd.items():
        targets = [CLASSES_12.index("_unknown_")] * len(clips)
        out[f"fsdd_{name}_unknown"] = _pct(accuracies(logits(clips), targets))
    if sc:
        clips, targets = sc["test"]
        out["sc_test"] = _pct(accuracies(logits(clips), targets))
    return out


# ----------------------------------------------------------------------------- real data


def load_fsdd(fsdd_dir: str) -> dict:
    """{"test": (clips, digit ids), "all": ...}: official test takes 0-4, and every recording."""
    from rnnbench.data import fsdd as fsdd_lib

    ds = fsdd_lib.load_fsdd(data_dir=fsdd_dir, split="official")
    test = ds.splits["test"]
    every = [ds.splits[s] for s in ("train", "validation", "test")]
    return {
        "test": (test.audio, list(test.labels)),
        "all": ([a for sp in every for a in sp.audio], [int(x) for sp in every for x in sp.labels]),
    }


def load_speech_commands(sc_dir: str, protocol: int) -> dict:
    """{"test": (clips, ids in synth_commands' classes)} of an extracted Speech Commands copy:
    protocol 12 the TF recipe's test split; protocol 35 the test clips of the 35 words."""
    import numpy as np

    from rnnbench.data import speech_commands
    from rnnbench.data.synth import CLASSES_12, WORDS_35

    ds = speech_commands.load_speech_commands(data_dir=sc_dir, protocol=protocol)
    test = ds.splits["test"]
    names = [ds.classes[int(i)] for i in test.labels]
    want = CLASSES_12 if protocol == 12 else WORDS_35
    keep = [i for i, n in enumerate(names) if n in want]
    if not keep:
        raise ValueError(f"--speech_commands_dir {sc_dir}: no test clips of the words {want}")
    return {
        "test": (
            [test.audio[i] for i in keep],
            np.array([want.index(names[i]) for i in keep], np.int32),
        )
    }


# ----------------------------------------------------------------------------- runs


@dataclasses.dataclass
class Job:
    """One trained model of the table."""

    name: str
    protocol: int | None  # None: the FSDD-trained reference
    config: object
    workdir: str
    row: object = None


def _finished(config, workdir: str) -> dict | None:
    path = os.path.join(workdir, "final.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        final = json.load(f)
    return final if final.get("steps") == config.num_steps else None


def train_job(job: Job) -> dict:
    """Trains `job` (or returns its finished final.json); the corpus build is timed here."""
    from rnnbench import input_pipeline, train

    final = _finished(job.config, job.workdir)
    if final is not None:
        return final
    t0 = time.time()
    dataset = input_pipeline.load_dataset(job.config)
    corpus_s = time.time() - t0
    final = train.train_and_evaluate(job.config, job.workdir, dataset=dataset, progress=True)
    from rnnbench import atomic

    atomic.write_json(
        os.path.join(job.workdir, "corpus_time.json"),
        {"corpus_load_s": corpus_s, "note": "build or cache load, before training"},
    )
    return final


def _corpus_seconds(workdir: str) -> float | None:
    path = os.path.join(workdir, "corpus_time.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["corpus_load_s"]


def score_job(job: Job, final: dict, fsdd: dict, sc: dict | None, sc_dir: str | None) -> dict:
    """The job's real-speech scores, cached in <workdir>/transfer_scores.json per (step, data)."""
    from rnnbench import atomic, inference

    key = {
        "step": final.get("steps"),
        "fsdd": fsdd["_dir"],
        "speech_commands": sc_dir,
        "scorer": SCORER_VERSION,
    }
    path = os.path.join(job.workdir, SCORES_FILE)
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        if saved.get("key") == key:
            return saved["scores"]
    data = {k: v for k, v in fsdd.items() if k != "_dir"}
    classes_json = os.path.join(job.workdir, "classes.json")
    if not os.path.exists(classes_json):  # load_run then needs no corpus for class names
        atomic.write_json(classes_json, {"task": "classify", "classes": _classes(job)})
    logits = logits_fn(inference.load_run(job.workdir))
    if job.protocol is None:  # the reference, scored the same way as the rows
        scores = {"fsdd_test_digits": _pct(accuracies(logits(data["test"][0]), data["test"][1]))}
    elif job.protocol == 35:
        data = {k: (c, fsdd_targets(t, _classes(job))) for k, (c, t) in data.items()}
        scores = score_35(logits, data, sc)
    else:
        scores = score_12(logits, data, sc)
    atomic.write_json(path, {"key": key, "scores": scores})
    return scores


def _classes(job: Job) -> list[str]:
    from rnnbench.data import DIGIT_WORDS
    from rnnbench.data.synth import CLASSES_12, WORDS_35

    return {35: WORDS_35, 12: CLASSES_12, None: DIGIT_WORDS}[job.protocol][:]


def jobs(
    rows,
    variant: str,
    num_steps: int | None,
    workdir: str,
    fsdd_dir: str,
    sc_dir: str | None = None,
) -> list[Job]:
    """The models of the table: each row's protocols, then the FSDD-trained reference; rows that
    need Speech Commands' background noise only with `sc_dir`.
    `num_steps` replaces the config's (warmup then at most a tenth of them)."""
    from experiments.configs import transfer as tc

    def steps(c):
        if num_steps:
            c.num_steps = num_steps
            c.optimizer.warmup_steps = min(c.optimizer.warmup_steps, num_steps // 10)
        return c

    noise_dir = os.path.join(sc_dir, "_background_noise_") if sc_dir else None
    out = [
        Job(
            row.name,
            p,
            steps(tc.get_config(variant, p, row, noise_dir)),
            os.path.join(workdir, f"p{p}", row.name),
            row,
        )
        for row in rows
        if noise_dir or not row.sc_noise
        for p in row.protocols
    ]
    out.append(
        Job(
            "fsdd_reference",
            None,
            steps(tc.reference_config(variant, fsdd_dir)),
            os.path.join(workdir, "fsdd_reference"),
        )
    )
    return out


# ----------------------------------------------------------------------------- the table


def _fmt(entry: dict | None) -> str:
    return "—" if entry is None else f"{100 * entry['accuracy']:.2f}%"


def _band(row: dict) -> str:
    """The features' band: '—' for the full 0-8 kHz, else its upper edge."""
    fmax = row.get("fmax")
    return "—" if not fmax else f"0-{fmax / 1000:g} kHz"


def _steps(row: dict, settings: dict) -> str:
    """The row's training steps (a result made before rows had their own: the table's)."""
    return f"{row.get('num_steps') or settings['num_steps']:,}"


def _counts(entry: dict | None) -> str:
    return "" if entry is None else f" ({entry['correct']:,}/{entry['total']:,})"


def render(result: dict) -> str:
    """The Markdown table of a result dict (what `main` writes to <out>.json)."""
    settings = result["settings"]
    lines = [
        (
            "# Synthetic to real speech: models trained only on `synth_commands`, tested on "
            "recordings"
        ),
        "",
        (
            f"Generated by `experiments/transfer.py` from `{os.path.basename(result['out'])}.json`; "
            "do not edit by hand. Reproduce with:"
        ),
        "",
        "```",
        *(
            [REPRODUCE, "```", "", "which runs:", "", "```"]
            if result["command"] == DEFAULT_COMMAND
            else []
        ),
        result["command"],
        "```",
        "",
        f"- made: {result['provenance_line']}",
        (
            f"- runs: `{settings['variant']}` encoder of experiments/configs/kws.py (conv front-end, "
            f"1 layer of {settings['hidden']}), {settings['num_steps']:,} steps (a row's own in "
            "its *steps* column), batch "
            f"{settings['batch_size']}, **one seed ({settings['seed']}) per row**: short runs for a "
            "comparison, not the main job. Corpus: synth_commands "
            f"{settings['sizes']} train / validation / test clips; test voices unseen. "
            "*augment* options (rnnbench/data/augment.py) change training clips only, each "
            "option a clip with probability 1/2 (`name:p`: p); every row's validation and test clips are the "
            "default corpus's, so the synthetic column compares rows on the same clips. *mel "
            "warp*: the on-device VTLP warp (rnnbench/features.py), training only. *band*: the "
            "log-mel filterbank's range when it is not the full 0-8 kHz (`features.fmax`, in "
            "training and in every test; FSDD is recorded at 8 kHz, so it holds nothing above "
            "4 kHz)."
        ),
        f"- full-size version of a row: `{settings['full_size_command']}`",
        (
            "- FSDD: official test takes 0-4 (300 clips; the reference's test set) and all 3,000 "
            "recordings; 6 speakers no synthetic model heard. FSDD digit d is the word "
            '"zero".."nine" of the 35; *10 digits* = argmax over the 10 digit words only '
            "(the reference's task), *35 words* = over all 35. For 12-class models every FSDD clip's "
            "right answer is `_unknown_` (digits are not commands)."
        ),
        f"- Speech Commands: {result.get('speech_commands_dir') or 'not given (columns —)'}",
        "",
        "## 35-word models (FSDD digits)",
        "",
        (
            "| corpus | augment | mel warp | band | steps | synthetic test (35 words) | "
            "FSDD test, 10 digits | gap to FSDD-trained (points) | FSDD test, 35 words | "
            "FSDD all 3,000, 10 digits | FSDD all, 35 words | Speech Commands test, 35 words | "
            "corpus s |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ref = result["reference"]
    ref_acc = (ref.get("fsdd_test_digits") or {}).get("accuracy")
    for r in (r for r in result["rows"] if r["protocol"] == 35):
        s = r["scores"]
        d = s.get("fsdd_test_digits")
        gap = "—" if d is None or ref_acc is None else f"{100 * (d['accuracy'] - ref_acc):+.2f}"
        lines.append(
            f"| {r['name']} | {r['augment'] or '—'} | {r['mel_warp'] or '—'} | {_band(r)} | "
            f"{_steps(r, settings)} | {_fmt(r['synthetic_test'])} | {_fmt(d)}{_counts(d)} | {gap} | "
            f"{_fmt(s.get('fsdd_test_35'))} | {_fmt(s.get('fsdd_all_digits'))} | "
            f"{_fmt(s.get('fsdd_all_35'))} | {_fmt(s.get('sc_test'))}{_counts(s.get('sc_test'))} | "
            f"{'—' if r['corpus_s'] is None else round(r['corpus_s'])} |"
        )
    lines.append(
        f"| **FSDD-trained reference** (real speech) | — | — | — | {settings['num_steps']:,} | — | "
        f"{_fmt(ref.get('fsdd_test_digits'))}{_counts(ref.get('fsdd_test_digits'))} | "
        "0 | — | — | — | — | — |"
    )
    lines += [
        "",
        "## 12-class models (the main job's protocol)",
        "",
        (
            "| corpus | augment | mel warp | band | steps | synthetic test (12 classes) | "
            "FSDD test as `_unknown_` | FSDD all 3,000 as `_unknown_` | "
            "Speech Commands test, 12 classes | corpus s |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in result["rows"] if r["protocol"] == 12):
        s = r["scores"]
        lines.append(
            f"| {r['name']} | {r['augment'] or '—'} | {r['mel_warp'] or '—'} | {_band(r)} | "
            f"{_steps(r, settings)} | {_fmt(r['synthetic_test'])} | "
            f"{_fmt(s.get('fsdd_test_unknown'))} | "
            f"{_fmt(s.get('fsdd_all_unknown'))} | {_fmt(s.get('sc_test'))}"
            f"{_counts(s.get('sc_test'))} | "
            f"{'—' if r['corpus_s'] is None else round(r['corpus_s'])} |"
        )
    lines += ["", "## Goals (issue 17)", ""] + [f"- {g}" for g in goals(result)]
    lines += [
        "",
        (
            "*corpus s*: seconds to build the row's corpus (or load it, when it was "
            "cached) in the process that trained the row, on this shared machine."
        ),
    ]
    own = ref.get("fsdd_test_in_training_eval")
    if own:
        lines += [
            "",
            (
                "The reference is scored like the rows (experiments/transfer.py pads clips to "
                "multiples of 0.5 s); its training run's own evaluation, with other padding, "
                f"gave {_fmt(own)}{_counts(own)} on the same clips."
            ),
        ]
    return "\n".join(lines) + "\n"


def goals(result: dict) -> list[str]:
    """The issue's goals, judged from the numbers in `result`."""
    out = []
    ref = (result["reference"].get("fsdd_test_digits") or {}).get("accuracy")
    rows35 = [
        r for r in result["rows"] if r["protocol"] == 35 and r["scores"].get("fsdd_test_digits")
    ]
    if rows35 and ref is not None:
        best = max(rows35, key=lambda r: r["scores"]["fsdd_test_digits"]["accuracy"])
        gap = 100 * (ref - best["scores"]["fsdd_test_digits"]["accuracy"])
        out.append(
            f"within 5 points of the FSDD-trained model on FSDD digits: best row "
            f"`{best['name']}` is {gap:.2f} points below it: "
            f"**{'met' if gap <= 5 else 'not met'}**"
        )
    sc = [r for r in result["rows"] if r["protocol"] == 12 and r["scores"].get("sc_test")]
    if sc:
        best = max(sc, key=lambda r: r["scores"]["sc_test"]["accuracy"])
        acc = 100 * best["scores"]["sc_test"]["accuracy"]
        out.append(
            f">= 90% on real 12-class Speech Commands: best row `{best['name']}` "
            f"{acc:.2f}%: **{'met' if acc >= 90 else 'not met'}**"
        )
    else:
        out.append(
            ">= 90% on real 12-class Speech Commands: **not measured** (no --speech_commands_dir)"
        )
    synth12 = [r for r in result["rows"] if r["protocol"] == 12 and r["synthetic_test"]]
    for r in synth12:
        acc = 100 * r["synthetic_test"]["accuracy"]
        out.append(
            f"12-class synthetic test of row `{r['name']}` at these short settings: "
            f"{acc:.2f}% (the main job's >= 95% is judged by its own 2,000-step run, "
            "results/kws_default.md)"
        )
    return out


DEFAULT_COMMAND = "RNNBENCH_FSDD_DIR=/path/to/fsdd python -m experiments.transfer"
# the table made with every default flag is experiments.reproduce's entry `transfer`
REPRODUCE = "RNNBENCH_FSDD_DIR=/path/to/fsdd python -m experiments.reproduce transfer"


def _command(values: dict, defaults: dict) -> str:
    """The command line that makes this table: the flags that differ from their defaults."""
    parts = [DEFAULT_COMMAND]
    parts += [
        f"--{k}={shlex.quote(str(v))}"
        for k, v in values.items()
        if v is not None and v != defaults.get(k)
    ]
    return " ".join(parts)


def measure(
    rows, variant: str, num_steps: int | None, workdir: str, fsdd_dir: str, sc_dir: str | None
) -> tuple[list[dict], dict]:
    """Trains (or reuses) every job of `rows` and the reference; -> (row results, reference)."""
    fsdd = dict(load_fsdd(fsdd_dir), _dir=os.path.abspath(fsdd_dir))
    sc = {p: load_speech_commands(sc_dir, p) for p in (12, 35)} if sc_dir else {}
    result_rows, reference = [], {}
    for job in jobs(rows, variant, num_steps, workdir, fsdd_dir, sc_dir):
        print(f"--- {job.name} (protocol {job.protocol or 'fsdd'}): {job.workdir}", flush=True)
        final = train_job(job)
        scores = score_job(job, final, fsdd, sc.get(job.protocol), sc_dir)
        n = int(final["test_examples"])
        test = _pct((round(final["test_accuracy"] * n), n))
        if job.protocol is None:
            reference = {
                "workdir": job.workdir,
                "fsdd_test_digits": scores["fsdd_test_digits"],
                "fsdd_test_in_training_eval": test,
                "train_time_s": final.get("train_time_s"),
            }
            continue
        result_rows.append(
            {
                "name": job.name,
                "protocol": job.protocol,
                "augment": job.row.augment + (" + SC background noise" if job.row.sc_noise else ""),
                "mel_warp": job.row.mel_warp,
                "fmax": job.row.fmax,
                "num_steps": job.config.num_steps,
                "workdir": job.workdir,
                "synthetic_test": test,
                "synthetic_validation": final.get("val_accuracy"),
                "scores": scores,
                "corpus_s": _corpus_seconds(job.workdir),
                "train_time_s": final.get("train_time_s"),
            }
        )
    return result_rows, reference


def settings(variant: str, num_steps: int | None) -> dict:
    """What every row shares, for the table's header."""
    from experiments.configs import transfer as tc

    cfg = tc.get_config(variant)
    opts = cfg.data.options
    return {
        "variant": variant,
        "hidden": cfg.model.hidden,
        "num_steps": num_steps or cfg.num_steps,
        "batch_size": cfg.batch_size,
        "seed": cfg.seed,
        "sizes": f"{opts.train_size:,} / {opts.validation_size:,} / {opts.test_size:,}",
        "full_size_command": "python -m experiments.train "
        "--config=experiments/configs/transfer.py:lstm --config.num_steps=2000 "
        "--config.data.protocol=<12 or 35> --config.data.options.augment=<the row's> "
        "--config.spec_augment.mel_warp=<the row's> --workdir=runs/<row>",
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from rnnbench import atomic, provenance

    json_path = flags.FLAGS.out + ".json"
    if flags.FLAGS.render_only:
        try:
            with open(json_path) as f:
                result = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"error: --render_only needs {json_path} ({e})")
        atomic.write_text(flags.FLAGS.out + ".md", render(result))
        print(f"wrote {flags.FLAGS.out}.md")
        return
    from experiments.configs import transfer as tc

    fsdd_dir = flags.FLAGS.fsdd_dir or os.environ.get("RNNBENCH_FSDD_DIR")
    if not fsdd_dir or not os.path.isdir(fsdd_dir):
        sys.exit(
            f"error: --fsdd_dir (or $RNNBENCH_FSDD_DIR) must be an FSDD directory, got {fsdd_dir!r}"
        )
    known = {r.name: r for r in tc.ROWS}
    unknown = [r for r in (flags.FLAGS.rows or []) if r not in known]
    if unknown:
        sys.exit(f"error: --rows: unknown row(s) {unknown}; known: {', '.join(known)}")
    if flags.FLAGS.speech_commands_dir and not os.path.isdir(flags.FLAGS.speech_commands_dir):
        sys.exit(
            f"error: --speech_commands_dir {flags.FLAGS.speech_commands_dir!r} is not a directory"
        )
    rows = [known[r] for r in flags.FLAGS.rows] if flags.FLAGS.rows else list(tc.ROWS)
    sc_dir = (
        os.path.abspath(flags.FLAGS.speech_commands_dir)
        if flags.FLAGS.speech_commands_dir
        else None
    )
    try:
        result_rows, reference = measure(
            rows, flags.FLAGS.variant, flags.FLAGS.num_steps, flags.FLAGS.workdir, fsdd_dir, sc_dir
        )
    except ValueError as e:  # bad data or config, named by the loader or the trainer
        sys.exit(f"error: {e}")
    names = ("workdir", "out", "rows", "variant", "num_steps", "speech_commands_dir")
    values = {n: flags.FLAGS[n].value for n in names}
    values["rows"] = ",".join(flags.FLAGS.rows) if flags.FLAGS.rows else None
    result = {
        "command": _command(values, {n: flags.FLAGS[n].default for n in names}),
        "out": flags.FLAGS.out,
        "provenance": provenance.record(),
        "rows": result_rows,
        "reference": reference,
        "fsdd_dir": fsdd_dir,
        "speech_commands_dir": sc_dir,
        "settings": settings(flags.FLAGS.variant, flags.FLAGS.num_steps),
    }
    result["provenance_line"] = provenance.one_line(result["provenance"])
    atomic.write_json(json_path, result)
    atomic.write_text(flags.FLAGS.out + ".md", render(result))
    print(f"wrote {json_path} and {flags.FLAGS.out}.md")


if __name__ == "__main__":
    from rnnbench import errors, hugepages

    hugepages.ensure()
    define_flags()
    errors.run(main)
