"""CTC decoders compared on trained runs: greedy, prefix beam search, beam search + character LM.

  python -m experiments.decoders --workdirs=runs/ctc_decoders/seed=0,runs/ctc_decoders/seed=1 \\
      --out=results/ctc_decoders --beam=10
  python -m experiments.decoders --sweep_dir=runs/asr_families_phrases --speed_only

Comparison (default). Each run (a finished CTC run; all of one configuration but the seed) is
restored once and its frame log-probabilities on the validation and test splits computed once
(jitted, the features and model of its training). Three decoders read them, each an objective
built as `rnnbench/objectives/ctc.py` builds it from `config.decode`, so a number here is what
the run's final evaluation gives with that `--config.decode...`:
  greedy        best path (decode.beam 0), the default during training
  beam B        prefix beam search (Hannun et al. 2014), decode.beam B, decode.token_prune
  beam B + LM   the same with shallow fusion of a character n-gram LM estimated from the
                training transcripts (rnnbench/char_lm.py): lm_order, lm_weight and
                insertion_bonus are picked on the validation split (lowest mean CER over the
                runs, then WER) from the --lm_orders x --lm_weights x --insertion_bonuses grid
Test CER and WER per run, mean ± sample std over runs, the paired change against greedy, and
decoding speed measured side by side in this one process: per test batch the decoders take
turns (the order rotates from batch to batch) on the same log-probs. `search utt/s` counts the
search alone; `end-to-end utt/s` adds the batch's forward pass (features + network, compiled
beforehand). Writes <out>.md and <out>.json atomically; the Markdown header starts with the
command that reproduces it.

Speed only (`--speed_only`): each run of --workdirs / --sweep_dir (any model kind) is restored
and its own final-evaluation decoding (`config.decode`) timed on --split after a warm-up that
compiles every batch shape; writes <workdir>/decode_speed.json, which rnnbench/report.py shows
as a `decode utt/s` column. Runs are timed one after another in this process.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shlex
import statistics
import sys
import time

from absl import app, flags, logging

from experiments import decoder_runs

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Trained runs (workdirs), comma-separated.")
_SWEEP_DIR = flags.DEFINE_string(
    "sweep_dir", None, "A sweep directory: its finished runs (sweep.json), instead of --workdirs."
)
_OUT = flags.DEFINE_string(
    "out", "results/ctc_decoders", "Output path without extension: <out>.md and <out>.json."
)
_BEAM = flags.DEFINE_integer("beam", 10, "Beam width of the beam-search decoders.")
_TOKEN_PRUNE = flags.DEFINE_integer("token_prune", 5, "Labels extended per frame (top-k); 0: all.")
_LM_ORDERS = flags.DEFINE_list("lm_orders", ["3", "6"], "LM orders tried on validation.")
_LM_WEIGHTS = flags.DEFINE_list("lm_weights", ["0.3", "0.6", "1.0"], "LM weights tried.")
_BONUSES = flags.DEFINE_list("insertion_bonuses", ["0.0", "1.0"], "Insertion bonuses tried.")
_SPEED_ONLY = flags.DEFINE_bool(
    "speed_only",
    False,
    "Time each run's own decoding on --split and write <workdir>/decode_speed.json; no comparison.",
)
_SPLIT = flags.DEFINE_string("split", "test", "Split timed by --speed_only.")

SPEED_FILE = "decode_speed.json"


@dataclasses.dataclass
class Forward:
    """One run's network outputs on one split, batch by batch (host numpy)."""

    batches: list[dict]
    outs: list[dict]
    seconds: float  # the timed forward passes (compiled beforehand)
    utterances: int


# ----------------------------------------------------------------------------- runs


def log_prob_program(config, params, dataset):
    """(step, program): `step(batch)` runs the run's jitted eval step with its `params` and
    returns host outputs including frame log-probs [batch, time', alphabet + 1]; `program`
    (rnnbench.train.prepare) holds the dataset, the objective and the buckets."""
    import jax

    from rnnbench import train

    cfg = decoder_runs.decode_config(config, {"beam": 1})  # beam > 0: eval_outputs keeps log_probs
    program = train.prepare(cfg, dataset)
    graphdef, _, _, _ = train.init_state(cfg, program.dataset, program.objective)
    _, eval_step = train.make_steps(cfg, graphdef, None, program.objective)
    step = jax.jit(eval_step)
    return (lambda batch: jax.device_get(step(params, batch))), program


def forward(step, program, split: str) -> Forward:
    """Every batch of `split` through `step`, timed after one compiling call per batch shape."""
    batches = decoder_runs.eval_batches(program, split)
    seen = set()
    for b in batches:  # compile (and warm) every shape first: timings exclude compilation
        shape = (b["audio"].shape, b["labels"].shape)
        if shape not in seen:
            seen.add(shape)
            step(b)
    t0 = time.perf_counter()
    outs = [step(b) for b in batches]
    seconds = time.perf_counter() - t0
    return Forward(batches, outs, seconds, int(sum(b["weights"].sum() for b in batches)))


def fit_lm(dataset, order: int):
    """The character n-gram LM a CTC run with decode.lm_order = `order` fits (training
    transcripts, the dataset alphabet)."""
    from rnnbench import char_lm

    return char_lm.CharNgramLM.fit(
        dataset.splits["train"].transcripts, order=order, alphabet=dataset.classes
    )


def decoder_objective(config, dataset, decode: dict, lm=None):
    """The CTC objective a run with `config.decode = decode` evaluates with; `lm`: its already
    fitted LM (else fitted here when decode.lm_order > 0, as the objective's `check` does)."""
    from rnnbench import objectives

    c = decoder_runs.decode_config(config, decode)
    objective = objectives.find("ctc", "ctc")(c)  # checks the decode settings
    if decode.get("lm_order"):
        objective.lm = lm if lm is not None else fit_lm(dataset, decode["lm_order"])
    return objective


def score_side_by_side(objectives_: dict, dataset, fwd: Forward) -> dict[str, dict]:
    """CER/WER of each named objective on the same outputs; per batch the objectives take turns
    (the order rotates), each timed. -> {name: {cer, wer, search_s, forward_s, utterances}}."""
    names = list(objectives_)
    accs = {n: objectives_[n].new_accumulator(final=True) for n in names}
    seconds = dict.fromkeys(names, 0.0)
    for k, (batch, out) in enumerate(zip(fwd.batches, fwd.outs)):
        for n in names[k % len(names) :] + names[: k % len(names)]:
            t0 = time.perf_counter()
            objectives_[n].accumulate(accs[n], dataset, batch, out)
            seconds[n] += time.perf_counter() - t0
    result = {}
    for n in names:
        m = objectives_[n].summarize(accs[n], dataset)
        result[n] = {
            "cer": m["cer"],
            "wer": m["wer"],
            "search_s": seconds[n],
            "forward_s": fwd.seconds,
            "utterances": fwd.utterances,
        }
    return result


# ----------------------------------------------------------------------------- comparison


def lm_grid(orders, weights, bonuses) -> list[dict]:
    return [
        {"lm_order": int(o), "lm_weight": float(w), "insertion_bonus": float(b)}
        for o, w, b in itertools.product(orders, weights, bonuses)
    ]


def compare(
    workdirs: list[str],
    *,
    beam: int = 10,
    token_prune: int | None = 5,
    lm_orders=(3, 6),
    lm_weights=(0.3, 0.6, 1.0),
    insertion_bonuses=(0.0, 1.0),
    dataset=None,
    progress: bool = True,
) -> dict:
    """Greedy, beam and beam + LM on every run; the LM settings picked on validation. Returns the
    report (JSON-able); `dataset` defaults to the runs' own (rnnbench.input_pipeline)."""
    from rnnbench import input_pipeline, provenance

    if beam < 1:
        raise ValueError(f"--beam must be >= 1, got {beam}")
    grid = lm_grid(lm_orders, lm_weights, insertion_bonuses)
    if not grid or any(g["lm_order"] < 1 or g["lm_weight"] < 0 for g in grid):
        raise ValueError(
            f"the LM grid needs orders >= 1 and weights >= 0, got orders "
            f"{list(lm_orders)}, weights {list(lm_weights)}"
        )
    t_start = time.time()
    runs = decoder_runs.load_runs(workdirs, kind="ctc")
    config = runs[0].config
    if dataset is None:
        dataset = input_pipeline.load_dataset(config)
    beam_decode = {"beam": beam, "token_prune": token_prune}
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda _: None)

    tuning = {_key(g): [] for g in grid}  # setting -> validation scores, one per run
    lms = {o: fit_lm(dataset, o) for o in sorted({g["lm_order"] for g in grid})}
    per_run, test_forwards = [], []
    for run in runs:
        step, program = log_prob_program(run.config, run.params, dataset)
        val = forward(step, program, "validation")
        say(
            f"{run.workdir}: tuning the LM on {val.utterances} validation utterances "
            f"({len(grid)} settings, beam {beam})"
        )
        for g in grid:
            lm_obj = decoder_objective(config, dataset, {**beam_decode, **g}, lms[g["lm_order"]])
            (m,) = score_side_by_side({"lm": lm_obj}, dataset, val).values()
            tuning[_key(g)].append({"cer": m["cer"], "wer": m["wer"]})
        baselines = {
            "greedy": decoder_objective(config, dataset, {"beam": 0}),
            "beam": decoder_objective(config, dataset, beam_decode),
        }
        per_run.append(
            {
                "workdir": run.workdir,
                "seed": int(run.config.seed),
                "checkpoint_step": run.step,
                "val": score_side_by_side(baselines, dataset, val),
            }
        )
        test_forwards.append(forward(step, program, "test"))
    best = min(grid, key=lambda g: _tuning_key(g, tuning))
    lm_decode = {**beam_decode, **best}
    say(f"LM picked on validation: {best}")

    for i, (r, test) in enumerate(zip(per_run, test_forwards)):
        decoders = {
            "greedy": decoder_objective(config, dataset, {"beam": 0}),
            "beam": decoder_objective(config, dataset, beam_decode),
            "beam_lm": decoder_objective(config, dataset, lm_decode, lms[best["lm_order"]]),
        }
        r["test"] = score_side_by_side(decoders, dataset, test)
        r["val"]["beam_lm"] = dict(tuning[_key(best)][i], utterances=r["val"]["beam"]["utterances"])
        say(
            f"{r['workdir']}: test "
            + ", ".join(f"{n} CER {v['cer']:.4f}" for n, v in r["test"].items())
        )

    report = {
        **decoder_runs.report_head("ctc_decoders", dataset, config, per_run, workdirs),
        "decoders": {"greedy": {"beam": 0}, "beam": beam_decode, "beam_lm": lm_decode},
        "lm_grid": {
            "orders": [int(o) for o in lm_orders],
            "weights": [float(w) for w in lm_weights],
            "insertion_bonuses": [float(b) for b in insertion_bonuses],
            "picked_by": "lowest mean validation CER over the runs, then WER",
            "results": [{**g, "val": tuning[_key(g)]} for g in grid],
        },
        "per_run": per_run,
        "rows": rows(per_run),
        "provenance": provenance.record(),
        "seconds": time.time() - t_start,
    }
    return report


def _key(g: dict) -> str:
    return json.dumps(g, sort_keys=True)


def _tuning_key(g: dict, tuning: dict) -> tuple:
    scores = tuning[_key(g)]
    return (
        statistics.mean(s["cer"] for s in scores),
        statistics.mean(s["wer"] for s in scores),
        g["lm_weight"],
        g["insertion_bonus"],
        g["lm_order"],
    )


def rows(per_run: list[dict]) -> list[dict]:
    """One row per decoder: test CER/WER, validation CER, the paired change against greedy and
    the speeds, each as stats over the runs."""
    return decoder_runs.paired_rows(
        per_run,
        ("greedy", "beam", "beam_lm"),
        {
            "search_utt_per_s": lambda t: t["utterances"] / max(t["search_s"], 1e-9),
            "end_to_end_utt_per_s": lambda t: (
                t["utterances"] / max(t["search_s"] + t["forward_s"], 1e-9)
            ),
        },
    )


# ----------------------------------------------------------------------------- writing


def _label(name: str, decode: dict) -> str:
    if name == "greedy":
        return "greedy (best path)"
    prune = f", top-{decode['token_prune']} labels" if decode.get("token_prune") else ""
    if name == "beam":
        return f"beam {decode['beam']}{prune}"
    return (
        f"beam {decode['beam']} + {decode['lm_order']}-gram char LM (weight "
        f"{decode['lm_weight']:g}, insertion bonus {decode['insertion_bonus']:g}){prune}"
    )


def verdict(report: dict) -> str:
    """What the table says about beam search against greedy's own numbers, from the rows."""
    by = {r["decoder"]: r for r in report["rows"]}
    parts = decoder_runs.against_greedy(report, _label)
    beats = all(by[n_]["delta_cer"]["mean"] < 0 for n_ in ("beam", "beam_lm"))
    head = (
        "Both beam decoders beat greedy decoding here."
        if beats
        else "Not every beam decoder beats greedy decoding here."
    )
    return head + " " + "; ".join(parts) + "."


def render_markdown(report: dict) -> str:
    from rnnbench import provenance

    title = os.path.basename(report["out"])
    lines = decoder_runs.header_lines(
        report, f"CTC decoders on `{report['dataset']}` (test split)", "experiments/decoders.py"
    )
    cfg = report["config"]
    model = cfg["model"]
    runs = report["runs"]
    commits = sorted({(p.get("git_commit") or "unknown")[:12] for p in report["run_provenance"]})
    programs = sorted(
        {p.get("models_in_program") for p in report["run_provenance"] if p.get("models_in_program")}
    )
    lm = report["lm_grid"]
    best = report["decoders"]["beam_lm"]
    steps = ", ".join(str(s) for s in sorted({r["checkpoint_step"] for r in runs}))
    how = "one process per run" if programs == [1] else f"programs of {programs} models"
    runs_line = (
        f"- runs: {len(runs)} CTC run(s), seeds "
        f"{', '.join(str(r['seed']) for r in runs)}, "
        f"{'bidirectional ' if model.get('bidirectional') else ''}{model.get('cell')} "
        f"{model.get('hidden')} x {model.get('layers')} layer(s), {cfg['num_steps']} "
        f"steps (checkpoint step {steps}); git {', '.join(f'`{c}`' for c in commits)}; "
        f"{how}"
    )
    lm_line = (
        f"- LM: picked on the validation split ({lm['picked_by']}) from orders "
        f"{lm['orders']} x weights {lm['weights']} x insertion bonuses "
        f"{lm['insertion_bonuses']}: order {best['lm_order']}, weight "
        f"{best['lm_weight']:g}, insertion bonus {best['insertion_bonus']:g}; every "
        f"setting's validation CER is in {title}.json"
    )
    lines += [
        runs_line,
        lm_line,
        f"- decoding: {provenance.one_line(report['provenance'])}",
        "",
        verdict(report),
        "",
    ]
    lines += decoder_runs.table(
        report,
        _label,
        [("search utt/s", "search_utt_per_s", 0), ("end-to-end utt/s", "end_to_end_utt_per_s", 0)],
    )
    lines += [
        "",
        (
            "Metrics are mean ± sample standard deviation (ddof=1) over the runs; Δ is each run's "
            "change against its own greedy decoding (negative: fewer errors). The beam + LM row's "
            "validation CER is the one its settings were picked on. Speeds were measured side by "
            "side in one process, the decoders taking turns on each test batch: `search` times the "
            "decoding of the network's outputs (greedy: collapsing the best path, which the jitted "
            "step computes; beam: Python/numpy prefix search, one utterance at a time), "
            f"`end-to-end` adds the batch's forward pass (batch {cfg['batch_size']}, compiled "
            "beforehand)."
        ),
        "",
    ]
    return "\n".join(lines)


def write(report: dict, out: str, **kwargs) -> dict:
    """Writes <out>.md and <out>.json atomically; returns the report with them recorded."""
    return decoder_runs.write(report, out, render_markdown, **kwargs)


def render(
    json_path: str, *, commands: list[str] | None = None, reproduce_command: str | None = None
) -> dict:
    """<out>.md (and .json) again from <out>.json alone; every number as the JSON holds it."""
    from rnnbench import report as report_lib

    report = report_lib.read_table_json(
        json_path, kind="ctc_decoders", program="experiments.decoders", what="a decoder comparison"
    )
    return write(
        report, json_path[: -len(".json")], commands=commands, reproduce_command=reproduce_command
    )


# ----------------------------------------------------------------------------- speed only


def time_decoding(workdir: str, split: str = "test", dataset=None) -> dict:
    """Times the run's own final-evaluation decoding (its `config.decode`) on `split` after a
    warm-up that compiles every batch shape; writes and returns <workdir>/decode_speed.json."""
    import jax

    from rnnbench import atomic, inference, input_pipeline, provenance, train

    run = inference.load_run(workdir)
    if dataset is None:
        dataset = input_pipeline.load_dataset(run.config)
    program = train.prepare(run.config, dataset)
    if split not in program.dataset.splits:
        raise ValueError(f"--split={split!r}: {dataset.name} has {sorted(dataset.splits)}")
    batches = decoder_runs.eval_batches(program, split)
    seen = set()
    for b in batches:
        shape = tuple(v.shape for v in b.values())
        if shape not in seen:
            seen.add(shape)
            jax.block_until_ready(run.eval_step(run.params, b))
    acc = program.objective.new_accumulator(final=True)
    t0 = time.perf_counter()
    for b in batches:
        out = jax.device_get(run.eval_step(run.params, b))
        program.objective.accumulate(acc, program.dataset, b, out)
    seconds = time.perf_counter() - t0
    metrics = program.objective.summarize(acc, program.dataset)
    n = int(sum(b["weights"].sum() for b in batches))
    result = {
        "split": split,
        "utterances": n,
        "seconds": seconds,
        "utterances_per_s": n / max(seconds, 1e-9),
        "batch_size": run.config.batch_size,
        "decode": dict(run.config.get("decode") or {}),
        "step": run.step,
        "metrics": metrics,
        "provenance": provenance.record(),
    }
    atomic.write_json(os.path.join(workdir, SPEED_FILE), result, strict=True)
    return result


# ----------------------------------------------------------------------------- CLI


def _command_line(argv: list[str]) -> str:
    return shlex.join(["python", "-m", "experiments.decoders", *argv[1:]])


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    if len(argv) > 1 and not argv[1].startswith("--"):
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if bool(_WORKDIRS.value) == bool(_SWEEP_DIR.value):
        raise app.UsageError("give exactly one of --workdirs and --sweep_dir")
    from rnnbench import grid

    try:
        workdirs = _WORKDIRS.value or grid.finished_runs(_SWEEP_DIR.value)
        if _SPEED_ONLY.value:
            for w in workdirs:
                r = time_decoding(w, _SPLIT.value)
                print(
                    f"{w}: {r['utterances_per_s']:.1f} utterances/s on {r['split']} "
                    f"({r['utterances']} in {r['seconds']:.1f} s) -> {w}/{SPEED_FILE}"
                )
            return 0
        report = compare(
            workdirs,
            beam=_BEAM.value,
            token_prune=_TOKEN_PRUNE.value or None,
            lm_orders=[int(x) for x in _LM_ORDERS.value],
            lm_weights=[float(x) for x in _LM_WEIGHTS.value],
            insertion_bonuses=[float(x) for x in _BONUSES.value],
        )
    except ValueError as e:
        sys.exit(f"error: {e}")
    report = write(report, _OUT.value, commands=[_command_line(sys.argv)])
    print(verdict(report))
    print(f"-> {report['files']['md']}, {report['files']['json']}")
    return 0


if __name__ == "__main__":
    from rnnbench import hugepages

    hugepages.ensure()
    app.run(main)
