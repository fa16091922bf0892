"""The results files that are not sweep tables, rendered from saved JSON (never typed).

  python -m experiments.render_results kws_default   # results/kws_default.md from
                                                     # results/kws_default.json (+ kws_fsdd.json)
  python -m experiments.render_results kws_default --train_workdir=/tmp/kws_default
      # first trains the main job (README command 1) as one timed process, on a fresh corpus
      # cache in the workdir, and saves results/kws_default.json: its final.json and config.json,
      # the process's wall and CPU time, the provenance record taken before it started
  python -m experiments.render_results perf          # results/perf.md from results/bench_step.json
                                                     # (+ bench_breakdown.json, bench_seeds.json)

Every number in the Markdown comes from those JSON files; each file states the command that
rendered it and the commands that measured its numbers.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time

from absl import app, flags

from rnnbench import atomic, provenance

_RESULTS = flags.DEFINE_string(
    "results_dir", "results", "Where the JSON sources and the rendered Markdown live."
)
_TRAIN_WORKDIR = flags.DEFINE_string(
    "train_workdir",
    None,
    "kws_default only: first train the main job into this new workdir and save its JSON.",
)

MAIN_JOB_CONFIG = "experiments/configs/kws.py:lstm"
TARGET_ACCURACY, TARGET_SECONDS = 0.95, 300  # the main job's target: >= 95% in under 5 minutes


# ----------------------------------------------------------------------------- the main job


def main_job_argv(workdir: str) -> list[str]:
    """README command 1, the main job: the default LSTM keyword spotter."""
    return [
        sys.executable,
        "-m",
        "experiments.train",
        f"--config={MAIN_JOB_CONFIG}",
        f"--workdir={workdir}",
        "--quiet",
    ]


def _display(argv: list[str], env: dict[str, str]) -> str:
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    cmd = shlex.join(["python" if argv[0] == sys.executable else argv[0], *argv[1:]])
    return f"{prefix} {cmd}" if prefix else cmd


def run_main_job(workdir: str, out_json: str, argv: list[str] | None = None) -> dict:
    """Trains the main job in a fresh `workdir` as one process, timed as a whole (corpus build on
    an empty cache in the workdir, compilation, training, evaluation), and saves what it wrote
    with the time and the provenance record (taken before the start: the load average is the
    machine's at the start) to `out_json`. `argv` replaces the command (tests)."""
    if os.path.exists(os.path.join(workdir, "final.json")):
        raise ValueError(
            f"--train_workdir={workdir} already holds a finished run (final.json); "
            "give a new directory, so that the time is of the whole process"
        )
    argv = argv or main_job_argv(workdir)
    cache = os.path.join(workdir, "corpus_cache")
    env = {"RNNBENCH_CACHE": cache}
    record = provenance.record({"corpus_cache": "fresh (empty at the start)"})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = subprocess.run(argv, env={**os.environ, **env}, check=False).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc:
        raise RuntimeError(f"the main job exited with status {rc}: {_display(argv, env)}")
    with open(os.path.join(workdir, "final.json")) as f:
        final = json.load(f)
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    result = {
        "command": _display(argv, env),
        "workdir": workdir,
        "final": final,
        "config": config,
        "process": {
            "wall_s": wall,
            "user_s": after.ru_utime - before.ru_utime,
            "sys_s": after.ru_stime - before.ru_stime,
        },
        "provenance": record,
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
    }
    atomic.write_json(out_json, result, strict=True)
    return result


def _minutes(seconds: float) -> str:
    total = round(seconds)
    return f"{total // 60}:{total % 60:02d}"


def _describe_config(c: dict) -> str:
    """One paragraph of what the main job trains, read from its config.json."""
    opts, m, o = (c.get("data") or {}).get("options") or {}, c["model"], c["optimizer"]
    sizes = " / ".join(
        f"{opts[k]:,}" for k in ("train_size", "validation_size", "test_size") if k in opts
    )
    front = m.get("frontend") or {}
    frontend = (
        f"a stride-{front['stride']} conv front-end ({front['channels']} channels), "
        if front.get("channels")
        else ""
    )
    layers = f"{m['layers']}-layer {'bi' if m.get('bidirectional') else ''}{m['cell'].upper()}"
    return (
        f"`{c['dataset']}`{f' ({sizes} train / validation / test clips)' if sizes else ''}, "
        f"{c['features']['n_mels']} {c['features']['kind']} features, SpecAugment "
        f"{'on' if c['spec_augment']['enabled'] else 'off'}; {frontend}{layers} {m['hidden']}, "
        f"{m['pooling']} state; {o['name']} {o['learning_rate']:g} {o['schedule']}, batch "
        f"{c['batch_size']}, {c['num_steps']:,} steps."
    )


def render_kws_default(
    main: dict, fsdd: dict | None = None, source: str = "results/kws_default.json"
) -> str:
    """results/kws_default.md from the main job's saved JSON (and the FSDD table's JSON)."""
    final, config, proc, rec = main["final"], main["config"], main["process"], main["provenance"]
    n_test = ((config.get("data") or {}).get("options") or {}).get("test_size")
    acc, val = final["test_accuracy"], final["val_accuracy"]
    correct = f" ({round(acc * n_test):,} / {n_test:,})" if n_test else ""
    cpu_s = proc["user_s"] + proc["sys_s"]
    met = acc >= TARGET_ACCURACY and proc["wall_s"] < TARGET_SECONDS
    load, cores = rec.get("load_avg_1m"), rec.get("cores") or 1
    loaded = load is not None and load > 0.5 * cores
    verdict = (
        "met"
        if met
        else "not met" + (" in this measurement, on a shared machine" if loaded else "")
    )
    lines = [
        "# The main job: LSTM keyword spotter on `synth_commands` (unseen test voices)",
        "",
        (
            f"Generated by `python -m experiments.render_results kws_default` from `{source}`; do "
            "not edit by hand. Measured with:"
        ),
        "",
        "```",
        f"python -m experiments.render_results kws_default --train_workdir={_workdir(main)}",
        "```",
        "",
        "which runs README command 1 as one timed process, on an empty corpus cache:",
        "",
        "```",
        main["command"],
        "```",
        "",
        (
            f"What it trains (`{MAIN_JOB_CONFIG}`): {_describe_config(config)} "
            f"{final['num_params']:,} parameters."
        ),
        "",
        (
            f"- measured: {provenance.one_line(rec)}; load average at the end "
            f"{main.get('load_avg_1m_end')}"
        ),
    ]
    if final.get("provenance"):
        lines.append(f"- the run: {provenance.one_line(final['provenance'])}")
    lines += [
        "",
        "| metric | value |",
        "|---|---|",
        f"| test accuracy (unseen voices) | **{100 * acc:.2f}%**{correct} |",
        f"| validation accuracy | {100 * val:.2f}% |",
        (
            f"| **whole process: corpus build, compilation, {final['steps']:,} steps, "
            "evaluations** "
            f"| **{_minutes(proc['wall_s'])} wall** ({proc['wall_s']:.0f} s) |"
        ),
        (
            f"| of which training steps | {final['train_time_s']:.1f} s "
            f"({final['steps_per_s']:.1f} steps/s) |"
        ),
        (
            f"| CPU time (user + sys) | {cpu_s:.0f} s ({100 * cpu_s / proc['wall_s']:.0f}% of a "
            "core) |"
        ),
        "",
        (
            f"**Target ({100 * TARGET_ACCURACY:.0f}% test accuracy on unseen voices in under "
            f"{TARGET_SECONDS // 60} minutes, corpus build and compilation included): "
            f"{verdict}.**"
        ),
    ]
    if loaded:
        lines += [
            "",
            (
                f"**The machine was shared while this was measured** (load average {load} at the "
                f"start on {cores} cores, {main.get('load_avg_1m_end')} at the end): the times are "
                "those of a loaded machine, slower than on an idle one. The accuracies do not "
                "depend on the load."
            ),
        ]
    if fsdd:
        lines += ["", *_fsdd_section(fsdd)]
    lines.append("")
    return "\n".join(lines)


def _workdir(main: dict) -> str:
    return main.get("workdir") or "DIR"


def _fsdd_section(rep: dict) -> list[str]:
    from rnnbench.report import fmt_stat

    cells = ", ".join(
        f"{row['label']} {fmt_stat(row['metrics']['test_accuracy'], 100.0)}% "
        f"(n={row['metrics']['test_accuracy']['n']})"
        for row in rep["rows"]
    )
    steps = sorted({s for row in rep["rows"] for s in row["steps"]})
    programs = ", ".join(
        f"{n} runs in programs of {k}" for k, n in rep.get("run_models_in_program", {}).items()
    )
    return [
        "## FSDD (real recordings, official split: takes 0-4 test), LSTM and GRU",
        "",
        (
            f"Test accuracy, mean ± std over seeds ({', '.join(map(str, rep['seeds']))}; "
            f"{'/'.join(f'{s:,}' for s in steps)} steps; {programs}): {cells}. Table, curves "
            "and the "
            "command that reproduces them: [kws_fsdd.md](kws_fsdd.md)."
        ),
    ]


# ----------------------------------------------------------------------------- perf.md


def _bench_provenance(report: dict) -> str:
    """The provenance line of a benchmark JSON (or, for JSONs written before
    rnnbench/provenance.py, the machine fields they recorded)."""
    if "provenance" in report:
        return provenance.one_line(report["provenance"])
    keys = ("cpu", "cores", "jax", "torch", "glibc_tunables", "xla_flags")
    return "; ".join(
        f"{k} {report[k]!r}" if k in ("glibc_tunables", "xla_flags") else f"{k} {report[k]}"
        for k in keys
        if k in report
    ) + (
        "; git commit and load average at the start not recorded (written before "
        "rnnbench/provenance.py)"
    )


def _range(xs: list[float]) -> str:
    lo, hi = min(xs), max(xs)
    return f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}"


def _bench_step_section(rep: dict, source: str) -> list[str]:
    from experiments import bench_step

    rows = rep["results"]
    torch_r = [r for r in rows if "ratio_rnnbench_torch" in r]
    flax_r = [r for r in rows if "ratio_rnnbench_flax" in r]
    lines = [
        "## rnnbench vs torch.nn vs flax.linen: one train step",
        "",
        f"Measured by `{rep['command']}` ({source}; {rep['wall_s']:.0f} s of wall time).",
        "",
        (
            f"- provenance: {_bench_provenance(rep)}; load average at the end "
            f"{', '.join(f'{x:.1f}' for x in rep.get('loadavg_end', []))}"
        ),
        (
            f"- measured matmul peak (jitted 2048³ f32, best of 10): {rep['peak_gflops']:.0f} "
            "GFLOP/s"
        ),
        (
            f"- each cell: the median of {rep['repeats']} interleaved repeats (rnnbench, torch, "
            f"flax, rnnbench, ...) of {rep['steps_per_repeat']} step(s), after the warm-up steps; "
            'GFLOP/s counts matmuls only (3 x the forward matmul FLOPs); "min / CPU ms" is the '
            "fastest repeat and the median process CPU time per step"
        ),
        "- shapes: "
        + "; ".join(
            f"{name}: batch {s['batch']}, T {s['time']}, {s['features']} features, "
            f"H {s['hidden']}, {s['layers']} layer(s)"
            for name, s in bench_step.SHAPES.items()
            if name in {r["shape"] for r in rows}
        ),
        "",
    ]
    if torch_r:
        fast = [r for r in torch_r if r["ratio_rnnbench_torch"] <= 0.8]
        lines.append(
            f"**rnnbench/torch <= 0.8 on {len(fast)} of {len(torch_r)} (shape, cell) pairs**"
            + (
                ": "
                + ", ".join(
                    f"{r['shape']} {r['cell']} {r['ratio_rnnbench_torch']:.2f}" for r in fast
                )
                if fast
                else ""
            )
            + "."
        )
        per_cell = {}
        for r in torch_r:
            per_cell.setdefault(r["cell"], []).append(r["ratio_rnnbench_torch"])
        lines.append(
            "rnnbench/torch by cell: "
            + "; ".join(f"{c} {_range(v)}" for c, v in per_cell.items())
            + "."
        )
    if flax_r:
        ratios = [r["ratio_rnnbench_flax"] for r in flax_r]
        lines.append(
            f"rnnbench/flax: {_range(ratios)}, faster than flax.linen on "
            f"{sum(x < 1 for x in ratios)} of {len(ratios)}."
        )
    lines += ["", bench_step.markdown_table(rep), ""]
    return lines


def _breakdown_section(rep: dict, source: str) -> list[str]:
    shapes = list(rep["shapes"])
    parts = list(rep["shapes"][shapes[0]]["parts"])
    lines = [
        "## Where the LSTM step's time goes",
        "",
        (
            f"Measured by `{rep['command']}` ({source}): each part one jit, timed interleaved "
            "in one "
            f"process, {rep['repeats']} repeats; median ms (min). Parts: see "
            "`experiments/bench_step.py:lstm_breakdown`."
        ),
        "",
        f"- provenance: {_bench_provenance(rep)}",
        "",
        "| part | "
        + " | ".join(
            f"{s} (B {rep['shapes'][s]['shape']['batch']}, T {rep['shapes'][s]['shape']['time']}"
            f", H {rep['shapes'][s]['shape']['hidden']})"
            for s in shapes
        )
        + " |",
        "|---|" + "---|" * len(shapes),
    ]
    for p in parts:
        cells = [rep["shapes"][s]["parts"].get(p) for s in shapes]
        lines.append(
            f"| {p} | "
            + " | ".join(f"{c['median_ms']:.1f} ({c['min_ms']:.1f})" if c else "" for c in cells)
            + " |"
        )
    return [*lines, ""]


def _seeds_section(rep: dict, source: str) -> list[str]:
    ratios = [r["throughput_ratio"] for r in rep["results"]]
    lines = [
        "## Many seeds in one vmapped program vs one after another",
        "",
        (
            f"Measured by `{rep['command']}` ({source}): {rep['models']} models, part "
            f"`{rep['part']}`, {rep['repeats']} interleaved repeats, medians; faults = minor page "
            "faults per measured call."
        ),
        "",
        f"- provenance: {_bench_provenance(rep)}",
        "",
        (
            "| hidden | sequential ms (faults) | one vmapped call ms (faults) | vmapped / "
            "sequential "
            "throughput |"
        ),
        "|---|---|---|---|",
    ]
    for r in rep["results"]:
        lines.append(
            f"| {r['hidden']} | {r['sequential_ms']:.1f} ({r['sequential_faults']:.0f})"
            f" | {r['vmapped_ms']:.1f} ({r['vmapped_faults']:.0f}) | "
            f"{r['throughput_ratio']:.2f}x |"
        )
    lines += [
        "",
        (f"Median ratio {statistics.median(ratios):.2f}x (> 1: the one program is faster)."),
        "",
    ]
    return lines


PERF_SOURCES = {  # file -> (section renderer, the command that writes it)
    "bench_step.json": (
        _bench_step_section,
        (
            "python -m experiments.bench_step --shapes=S1,S2,S3 "
            "--cells=lstm,gru,rnn --repeats=15 --out=results/bench_step.json"
        ),
    ),
    "bench_breakdown.json": (
        _breakdown_section,
        (
            "python -m experiments.bench_step --breakdown "
            "--shapes=S1,S3 --repeats=10 --out=results/bench_breakdown.json"
        ),
    ),
    "bench_seeds.json": (
        _seeds_section,
        (
            'XLA_FLAGS="--xla_cpu_multi_thread_eigen=false '
            'intra_op_parallelism_threads=1" taskset -c 0 python -m '
            "experiments.bench_seeds --models=3 --hidden=64,128,256 --repeats=7 "
            "--out=results/bench_seeds.json"
        ),
    ),
}


def render_perf(results_dir: str) -> str:
    """results/perf.md from the benchmark JSONs in `results_dir` (a section per file present)."""
    lines = [
        "# Speed: train steps of rnnbench against torch.nn and flax.linen, and vmapped seeds",
        "",
        (
            "Generated by `python -m experiments.render_results perf` from the benchmark JSONs in "
            "results/; do not edit by hand. Each section names the command that measured it. "
            "Timings on shared machines drift between runs: compare within one section (one run, "
            "interleaved repeats), not across sections or days."
        ),
        "",
    ]
    found = 0
    for name, (section, command) in PERF_SOURCES.items():
        path = os.path.join(results_dir, name)
        if not os.path.exists(path):
            lines += [f"Not measured into `{path}` yet: `{command}`.", ""]
            continue
        with open(path) as f:
            rep = json.load(f)
        lines += section(rep, f"results/{name}")
        found += 1
    if os.path.exists(os.path.join(results_dir, "perf_unsourced.md")):
        lines += [
            (
                "Earlier measurements typed by hand, which no JSON holds (not regenerated, not "
                "checked): [perf_unsourced.md](perf_unsourced.md)."
            ),
            "",
        ]
    if not found:
        raise ValueError(
            f"no benchmark JSON in {results_dir!r}: expected one of {', '.join(PERF_SOURCES)}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry point


def _load(path: str, what: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise ValueError(f"{path}: cannot read {what} ({e.strerror})") from None
    except ValueError as e:
        raise ValueError(f"{path}: {what} is not valid JSON ({e})") from None


def main(argv):
    if len(argv) != 2 or argv[1] not in ("kws_default", "perf"):
        raise app.UsageError(
            "usage: python -m experiments.render_results kws_default|perf "
            "[--train_workdir=DIR] [--results_dir=results]"
        )
    results = _RESULTS.value
    try:
        if argv[1] == "perf":
            if _TRAIN_WORKDIR.value:
                raise app.UsageError("--train_workdir is for kws_default")
            atomic.write_text(os.path.join(results, "perf.md"), render_perf(results))
            print(f"wrote {os.path.join(results, 'perf.md')}")
            return 0
        source = os.path.join(results, "kws_default.json")
        if _TRAIN_WORKDIR.value:
            run_main_job(_TRAIN_WORKDIR.value, source)
        main_job = _load(source, "the main job's saved results (see --train_workdir)")
        fsdd_path = os.path.join(results, "kws_fsdd.json")
        fsdd = _load(fsdd_path, "the FSDD table") if os.path.exists(fsdd_path) else None
        atomic.write_text(
            os.path.join(results, "kws_default.md"), render_kws_default(main_job, fsdd, source)
        )
        print(f"wrote {os.path.join(results, 'kws_default.md')}")
        return 0
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from rnnbench import errors

    errors.run(main)
