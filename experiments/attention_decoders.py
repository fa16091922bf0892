"""Decoders of attention encoder-decoders compared on trained runs: greedy, beam search, and beam
search with CTC prefix scores (joint CTC/attention decoding, Watanabe et al. 2017).

  python -m experiments.attention_decoders --workdirs=runs/x/seed=0,runs/x/seed=1 \\
      --out=results/joint_decoders --beam=10 --ctc_weights=0.3,0.5

Each run (a finished `model.kind las` run; all of one configuration but the seed) is restored once
and its validation and test splits decoded inside the jitted eval step, the beam an array axis
(`seq2seq.beam_search`), exactly as the run's final evaluation decodes with that `config.decode`:
  greedy        decode.beam 1, what training validates with
  beam B        decode.beam B, the attention decoder's scores alone
  beam B + CTC  decode.beam B and decode.ctc_weight w: hypotheses score
                (1 - w) log p_att + w log p_ctc, partial ones with CTC prefix scores; only for
                runs trained with a CTC head (model.ctc_weight > 0); w is picked on the
                validation split (lowest mean CER over the runs, then WER) from --ctc_weights
Test CER and WER per run, mean ± sample std over runs and the paired change against greedy.
Speed is measured side by side in this one process: per test batch the decoders take turns (the
order rotates from batch to batch), each timed for its whole jitted eval step (features, encoder
and search, compiled beforehand for every batch shape) and the host's scoring. Writes <out>.md
and <out>.json atomically; the Markdown header starts with the command that reproduces it.
"""

from __future__ import annotations

import shlex
import statistics
import sys
import time

from absl import app, flags, logging

from experiments import decoder_runs


def define_flags() -> None:
    """The command line (defined only when run as a program, so that importing this module, e.g.
    from the tests, does not clash with experiments.decoders' flags)."""
    flags.DEFINE_list("workdirs", None, "Trained runs (workdirs), comma-separated.")
    flags.DEFINE_string(
        "sweep_dir",
        None,
        "A sweep directory: its finished runs (sweep.json), instead of --workdirs.",
    )
    flags.DEFINE_string(
        "out", "results/attention_decoders", "Output path without extension: <out>.md and .json."
    )
    flags.DEFINE_integer("beam", 10, "Beam width of the beam-search decoders.", lower_bound=1)
    flags.DEFINE_list(
        "ctc_weights", ["0.3", "0.5"], "CTC weights of joint decoding tried on validation."
    )
    flags.DEFINE_float("length_bonus", 0.0, "decode.length_bonus of every beam.")


KIND = "attention_decoders"
NAMES = ("greedy", "beam", "beam_ctc")


def decoder_step(config, graphdef, decode: dict):
    """(objective, jitted eval step) of a las run whose `config.decode` is `decode`: what its
    final evaluation decodes with (the decode settings are checked by the objective)."""
    import jax

    from rnnbench import objectives, train

    c = decoder_runs.decode_config(config, decode)
    objective = objectives.find("las", "ctc")(c)
    _, eval_step = train.make_steps(c, graphdef, None, objective)
    return objective, jax.jit(eval_step)


def decode_side_by_side(steps: dict, params, dataset, batches: list[dict]) -> dict[str, dict]:
    """CER/WER of each named (objective, step) on the same batches; every batch shape compiled
    first, then per batch the decoders take turns (the order rotates), each timed for its step and
    its scoring. -> {name: {cer, wer, seconds, utterances}}."""
    import jax

    names = list(steps)
    for name in names:
        seen = set()
        for b in batches:
            shape = tuple(v.shape for v in b.values())
            if shape not in seen:
                seen.add(shape)
                jax.block_until_ready(steps[name][1](params, b))
    accs = {n: steps[n][0].new_accumulator(final=True) for n in names}
    seconds = dict.fromkeys(names, 0.0)
    for k, batch in enumerate(batches):
        for n in names[k % len(names) :] + names[: k % len(names)]:
            objective, step = steps[n]
            t0 = time.perf_counter()
            out = jax.device_get(step(params, batch))
            objective.accumulate(accs[n], dataset, batch, out)
            seconds[n] += time.perf_counter() - t0
    utterances = int(sum(b["weights"].sum() for b in batches))
    result = {}
    for n in names:
        m = steps[n][0].summarize(accs[n], dataset)
        result[n] = {"cer": m["cer"], "wer": m["wer"], "seconds": seconds[n]}
        result[n]["utterances"] = utterances
    return result


def compare(
    workdirs: list[str],
    *,
    beam: int = 10,
    ctc_weights=(0.3, 0.5),
    length_bonus: float = 0.0,
    dataset=None,
    progress: bool = True,
) -> dict:
    """Greedy, beam and (for runs with a CTC head) beam + CTC on every run, the CTC weight picked
    on validation. Returns the report (JSON-able); `dataset` defaults to the runs' own."""
    from rnnbench import input_pipeline, provenance, train

    if beam < 1:
        raise ValueError(f"--beam must be >= 1, got {beam}")
    ctc_weights = [float(w) for w in ctc_weights]
    if not ctc_weights or any(not 0.0 < w <= 1.0 for w in ctc_weights):
        raise ValueError(f"--ctc_weights must be in (0, 1], got {ctc_weights}")
    t_start = time.time()
    runs = decoder_runs.load_runs(workdirs, kind="las")
    config, graphdef = runs[0].config, runs[0].graphdef
    joint = float(config.model.get("ctc_weight", 0.0)) > 0.0
    if dataset is None:
        dataset = input_pipeline.load_dataset(config)
    program = train.prepare(config, dataset)
    batches = {s: decoder_runs.eval_batches(program, s) for s in ("validation", "test")}
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda _: None)

    base = {"length_bonus": length_bonus, "ctc_weight": 0.0}
    settings = {"greedy": {"beam": 1, "ctc_weight": 0.0}, "beam": {"beam": beam, **base}}
    steps = {n: decoder_step(config, graphdef, d) for n, d in settings.items()}
    tried = {  # joint decoding, one compiled step per CTC weight
        w: decoder_step(config, graphdef, {**base, "beam": beam, "ctc_weight": w})
        for w in (ctc_weights if joint else [])
    }
    tuning = {w: [] for w in tried}
    per_run = []
    for run in runs:
        say(f"{run.workdir}: decoding {len(batches['validation'])} validation batches")
        val = decode_side_by_side(steps, run.params, program.dataset, batches["validation"])
        for w, step in tried.items():
            (m,) = decode_side_by_side(
                {"ctc": step}, run.params, program.dataset, batches["validation"]
            ).values()
            tuning[w].append({"cer": m["cer"], "wer": m["wer"]})
        per_run.append(
            {
                "workdir": run.workdir,
                "seed": int(run.config.seed),
                "checkpoint_step": run.step,
                "val": val,
            }
        )
    best = None
    if joint:
        best = min(
            ctc_weights,
            key=lambda w: (
                statistics.mean(s["cer"] for s in tuning[w]),
                statistics.mean(s["wer"] for s in tuning[w]),
                w,
            ),
        )
        settings["beam_ctc"] = {**base, "beam": beam, "ctc_weight": best}
        steps["beam_ctc"] = tried[best]
        say(f"CTC weight picked on validation: {best}")
    for i, (run, r) in enumerate(zip(runs, per_run)):
        r["test"] = decode_side_by_side(steps, run.params, program.dataset, batches["test"])
        if joint:
            r["val"]["beam_ctc"] = dict(tuning[best][i], utterances=r["val"]["beam"]["utterances"])
        say(
            f"{run.workdir}: test "
            + ", ".join(f"{n} CER {v['cer']:.4f}" for n, v in r["test"].items())
        )
    names = [n for n in NAMES if n in settings]
    return {
        **decoder_runs.report_head(KIND, dataset, config, per_run, workdirs),
        "decoders": {n: settings[n] for n in names},
        "ctc_weight_grid": {
            "weights": ctc_weights if joint else [],
            "picked_by": "lowest mean validation CER over the runs, then WER",
            "results": [{"ctc_weight": w, "val": tuning[w]} for w in tried],
        },
        "per_run": per_run,
        "rows": rows(per_run, names),
        "provenance": provenance.record(),
        "seconds": time.time() - t_start,
    }


def rows(per_run: list[dict], names) -> list[dict]:
    """One row per decoder: test CER/WER, validation CER, the paired change against greedy and
    the speed (utterances/s of the whole eval step), each as stats over the runs."""
    return decoder_runs.paired_rows(
        per_run, names, {"utt_per_s": lambda t: t["utterances"] / max(t["seconds"], 1e-9)}
    )


# ----------------------------------------------------------------------------- writing


def _label(name: str, decode: dict) -> str:
    if name == "greedy":
        return "greedy (beam 1)"
    bonus = f", length bonus {decode['length_bonus']:g}" if decode.get("length_bonus") else ""
    if name == "beam":
        return f"beam {decode['beam']}{bonus}"
    return f"beam {decode['beam']} + CTC prefix scores (weight {decode['ctc_weight']:g}){bonus}"


def verdict(report: dict) -> str:
    """What the table says about the beam decoders against greedy's own numbers."""
    by = {r["decoder"]: r for r in report["rows"]}
    parts = decoder_runs.against_greedy(report, _label)
    if "beam_ctc" not in by:
        parts.append("no CTC head (model.ctc_weight 0): joint decoding does not apply")
    return "; ".join(parts) + "."


def render_markdown(report: dict) -> str:
    import os

    from rnnbench import provenance

    title = os.path.basename(report["out"])
    lines = decoder_runs.header_lines(
        report,
        f"attention decoders on `{report['dataset']}` (test split)",
        "experiments/attention_decoders.py",
    )
    cfg, runs = report["config"], report["runs"]
    model = cfg["model"]
    commits = sorted({(p.get("git_commit") or "unknown")[:12] for p in report["run_provenance"]})
    steps = ", ".join(str(s) for s in sorted({r["checkpoint_step"] for r in runs}))
    grid = report["ctc_weight_grid"]
    lines += [
        f"- runs: {len(runs)} las run(s), seeds {', '.join(str(r['seed']) for r in runs)}: "
        f"{'bidirectional ' if model.get('bidirectional') else ''}{model.get('cell')} encoder "
        f"{model.get('hidden')} x {model.get('layers')} layer(s), location-aware attention, "
        f"trained with CTC weight {model.get('ctc_weight', 0.0):g}, {cfg['num_steps']} steps "
        f"(checkpoint step {steps}); git {', '.join(f'`{c}`' for c in commits)}",
        (
            f"- CTC weight of joint decoding: picked on the validation split ({grid['picked_by']}) "
            f"from {grid['weights']}; every weight's validation CER is in {title}.json"
            if grid["weights"]
            else "- joint decoding: not applicable (the runs have no CTC head)"
        ),
        f"- decoding: {provenance.one_line(report['provenance'])}",
        "",
        verdict(report),
        "",
    ]
    lines += decoder_runs.table(report, _label, [("utt/s", "utt_per_s", 1)])
    names = [row["decoder"] for row in report["rows"]]
    per_seed = "; ".join(
        f"seed {r['seed']}: " + " / ".join(f"{r['test'][n]['cer'] * 100:.2f}" for n in names)
        for r in report["per_run"]
    )
    lines += [
        "",
        f"Test CER (%) per run, decoders in the table's order: {per_seed}.",
        "",
        (
            "Metrics are mean ± sample standard deviation (ddof=1) over the runs; Δ is each run's "
            "change against its own greedy decoding (negative: fewer errors). The beam + CTC row's "
            "validation CER is the one its weight was picked on. Speeds were measured side by "
            "side in one process, the decoders taking turns on each test batch: the whole jitted "
            f"eval step (batch {cfg['batch_size']}: features, encoder, search; compiled "
            "beforehand) and the host's scoring."
        ),
        "",
    ]
    return "\n".join(lines)


def write(report: dict, out: str, **kwargs) -> dict:
    """Writes <out>.md and <out>.json atomically (decoder_runs.write with this table's
    Markdown); returns the report with them recorded."""
    return decoder_runs.write(report, out, render_markdown, **kwargs)


def render(
    json_path: str, *, commands: list[str] | None = None, reproduce_command: str | None = None
) -> dict:
    """<out>.md (and .json) again from <out>.json alone; every number as the JSON holds it."""
    from rnnbench import report as report_lib

    report = report_lib.read_table_json(
        json_path,
        kind=KIND,
        program="experiments.attention_decoders",
        what="an attention decoder comparison",
    )
    return write(
        report, json_path[: -len(".json")], commands=commands, reproduce_command=reproduce_command
    )


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    if bool(f.workdirs) == bool(f.sweep_dir):
        raise app.UsageError("give exactly one of --workdirs and --sweep_dir")
    from rnnbench import grid

    try:
        workdirs = f.workdirs or grid.finished_runs(f.sweep_dir)
        report = compare(
            workdirs, beam=f.beam, ctc_weights=f.ctc_weights, length_bonus=f.length_bonus
        )
    except ValueError as e:
        sys.exit(f"error: {e}")
    command = shlex.join(["python", "-m", "experiments.attention_decoders", *sys.argv[1:]])
    report = write(report, f.out, commands=[command])
    print(verdict(report))
    print(f"-> {report['files']['md']}, {report['files']['json']}")
    return 0


if __name__ == "__main__":
    from rnnbench import hugepages

    hugepages.ensure()
    define_flags()
    app.run(main)
