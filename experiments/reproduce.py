"""Reproduce a committed table: `python -m experiments.reproduce kws_cells`.

  python -m experiments.reproduce kws_cells               # runs/kws_cells -> results/kws_cells.*
  python -m experiments.reproduce kws_cells --dry_run     # print the exact commands, run nothing
  python -m experiments.reproduce kws_cells --render_only # results/kws_cells.{md,csv,json} again,
                                                          # from results/kws_cells.json alone
  python -m experiments.reproduce ctc_cells --smoke       # ~1 min: tiny data, 6 steps, 2 seeds,
                                                          # runs/smoke/..., checks the table

Each NAME in `SWEEPS` below carries what its committed table was made with: the config file and
sweep, the overrides applied to every run (e.g. num_steps=600) and the sweep runner's settings
(`--vmap_seeds`, `--parallel`). Vmapped seeds and one process per run compile different programs,
which round differently: the same configuration gives different numbers each way, so an entry
must say which its table used. The sweep runs as a subprocess of `python -m experiments.sweep`
(see `commands`), then rnnbench/report.py writes the table, whose header starts with the
reproduce command. `--parallel` changes only the speed columns. `--smoke` shrinks steps, data and
model through repeated `--override=key=value` flags, keeps seeds 0,1 of the first two
configurations of the grid (through a generated config file whose sweeps() holds just those),
writes under <workdir>/smoke/ (never results/), and exits non-zero unless the table has one row
per configuration with every run finished. FSDD sweeps need $RNNBENCH_FSDD_DIR.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys

from absl import app, flags

from rnnbench import atomic, grid
from rnnbench import report as report_lib


@dataclasses.dataclass(frozen=True)
class Entry:
    """How one committed table was made, all of it needed to make it again."""

    config: str  # experiments/configs/<file>.py[:variant]
    sweep: str  # name of a sweep in the config file's sweeps()
    overrides: tuple[str, ...] = ()  # --override key=value for every run, as the table used
    vmap_seeds: bool = False  # --vmap_seeds: each configuration's seeds as one program
    parallel: int = 1  # --parallel: runs at a time (moves only the speed columns)
    reference: str | None = None  # report --reference
    smoke_overrides: tuple[str, ...] = ()  # on top of SMOKE_OVERRIDES
    needs_env: str | None = None  # environment variable the config reads (data location)
    note: str | None = None  # how the table was made, where the fields above do not say
    table: str = "report"  # what makes the table from the runs: "report" (a sweep
    # table, rnnbench/report.py), "decoders" (a CTC decoder comparison,
    # experiments/decoders.py), "attention_decoders" (the same for attention encoder-decoders,
    # experiments/attention_decoders.py), "slu_pipeline" (each recogniser scored as an SLU pipeline by
    # experiments/slu_pipeline.py, then the report) or "tts" (each TTS run scored by
    # experiments/tts_bench.py)
    table_args: tuple[str, ...] = ()  # flags of the table's program (TABLE_PROGRAMS)
    decode_speed: bool = False  # time each run's decoding before the report (a
    # `decode utt/s` column; experiments.decoders --speed_only)
    smoke_table_args: tuple[str, ...] = ()  # table_args replaced under --smoke
    judge: tuple[str, str] | None = None  # (entry, run name): the recogniser of another entry's
    # sweep that scores intelligibility (table="tts"; left out under --smoke)


STEPS_600 = ("checkpoint_every=200", "eval_every=200", "num_steps=600")
STEPS_1000 = ("checkpoint_every=250", "eval_every=250", "num_steps=1000")
STEPS_2000 = ("checkpoint_every=500", "eval_every=500", "num_steps=2000")
SMOKE_DATA = grid.TINY_DATA  # synth_commands, synth_digits, synth_phrases
# the best direct SLU recipe's corpus size and steps (configs/slu.py sweeps *_3seeds, *_cells_*)
SLU_20K = ("data.options.train_size=20000", "num_steps=4000")
INFERRED_PARALLEL = (
    "The sweep runner did not record --parallel then; 2 is inferred from the "
    "runs' wall times against the sweep's duration (it moves only the speed "
    "columns)"
)
ASR = "experiments/configs/asr.py"
TTS_SMOKE = SMOKE_DATA + (
    "model.embed=16",
    "model.conv_channels=16",
    "model.decoder_hidden=16",
    "model.attention_dim=16",
    "model.postnet_channels=16",
    "synthesis.max_seconds=1.0",
    "synthesis.griffin_lim_iters=4",
)
STEPS_300 = ("checkpoint_every=150", "eval_every=150", "num_steps=300")
DECODERS = (
    "--beam=10",
    "--token_prune=5",
    "--lm_orders=3,6",
    "--lm_weights=0.3,0.6,1.0",
    "--insertion_bonuses=0.0,1.0",
)
SMOKE_DECODERS = ("--beam=2", "--lm_orders=2", "--lm_weights=0.5", "--insertion_bonuses=0.0")
JOINT_DECODERS = ("--beam=10", "--ctc_weights=0.3,0.5")  # experiments.attention_decoders
SMOKE_JOINT_DECODERS = ("--beam=2", "--ctc_weights=0.3")
JOINT_RUNS_REUSED = (
    "Its runs are the joint row's of asr_families_fsdd_{cell} (the same configuration: "
    "runs/asr_families_fsdd_{cell}/kind=las,ctc_weight=0.3,beam=1,cell={cell},seed=N copied "
    "to runs/joint_decoders_fsdd_{cell}/seed=N; the sweep keeps finished runs)"
)


def tts_entry(
    config: str, sweep: str, overrides: tuple[str, ...], *table_args: str, parallel: int = 1
) -> Entry:
    """A TTS sweep scored by experiments.tts_bench (two pictures a row, `table_args` added),
    judged by the BiGRU CTC recogniser of slu_pipeline_gru_seed0 (trained on other voices)."""
    return Entry(
        config,
        sweep,
        overrides,
        parallel=parallel,
        smoke_overrides=TTS_SMOKE,
        table="tts",
        table_args=("--plots=2", *table_args),
        smoke_table_args=("--num_utterances=4", "--batch_size=4", "--plots=1"),
        judge=("slu_pipeline_gru_seed0", "kind=ctc,cell=gru,split=voices,seed=0"),
    )


SWEEPS = {
    "kws_cells": Entry(
        "experiments/configs/kws.py:lstm",
        "cells",
        STEPS_600,
        vmap_seeds=True,
        parallel=2,
        reference="hello_edge",
        smoke_overrides=SMOKE_DATA,
        note=INFERRED_PARALLEL,
    ),
    "kws_fsdd": Entry(
        "experiments/configs/kws_fsdd.py:lstm",
        "lstm_gru",
        (),
        vmap_seeds=True,
        parallel=1,
        reference="hello_edge",
        needs_env="RNNBENCH_FSDD_DIR",
        note="Made before this entry by two `python -m experiments.train "
        "--config=experiments/configs/kws_fsdd.py:<cell> --seeds=0,1,2` commands, "
        "one per cell, whose runs were then moved into runs/kws_fsdd; the sweep "
        "trains the same two vmapped programs",
    ),
    "kws_fsdd_cells": Entry(
        "experiments/configs/kws_fsdd.py",
        "cells",
        STEPS_600,
        vmap_seeds=False,
        parallel=2,
        reference="hello_edge",
        needs_env="RNNBENCH_FSDD_DIR",
        note=INFERRED_PARALLEL,
    ),
    "kws_attention": Entry(
        "experiments/configs/kws.py:lstm",
        "attention",
        STEPS_600,
        vmap_seeds=True,
        parallel=2,
        smoke_overrides=SMOKE_DATA,
        note=INFERRED_PARALLEL,
    ),
    "kws_regularisers": Entry(
        "experiments/configs/kws.py:lstm",
        "regularisers",
        STEPS_600,
        vmap_seeds=False,
        parallel=2,
        smoke_overrides=SMOKE_DATA,
        note=INFERRED_PARALLEL,
    ),
    "kws_depth": Entry(
        "experiments/configs/kws.py:lstm",
        "depth",
        STEPS_600,
        vmap_seeds=False,
        parallel=2,
        smoke_overrides=SMOKE_DATA,
        note=INFERRED_PARALLEL,
    ),
    "ctc_cells": Entry(
        "experiments/configs/ctc.py",
        "cells",
        STEPS_1000,
        vmap_seeds=True,
        parallel=2,
        smoke_overrides=SMOKE_DATA,
        note=INFERRED_PARALLEL,
    ),
    "ctc_fsdd_cells": Entry(
        "experiments/configs/ctc_fsdd.py",
        "cells",
        STEPS_1000,
        vmap_seeds=False,
        parallel=2,
        smoke_overrides=SMOKE_DATA,
        needs_env="RNNBENCH_FSDD_DIR",
        note=INFERRED_PARALLEL,
    ),
    # recognition (issue 13): CTC decoders on trained BiLSTM CTC runs, model families x cells
    "ctc_decoders": Entry(
        f"{ASR}:ctc_bilstm_digits",
        "decoders",
        STEPS_1000,
        parallel=1,
        smoke_overrides=SMOKE_DATA,
        table="decoders",
        table_args=DECODERS,
        smoke_table_args=SMOKE_DECODERS,
    ),
    "ctc_decoders_seed0": Entry(
        f"{ASR}:ctc_bilstm_digits",
        "decoders_seed0",
        STEPS_1000,
        parallel=1,
        smoke_overrides=SMOKE_DATA,
        table="decoders",
        table_args=DECODERS,
        smoke_table_args=SMOKE_DECODERS,
    ),
    "ctc_decoders_fsdd": Entry(
        f"{ASR}:ctc_bilstm_fsdd",
        "decoders",
        # 10 ms frames, no conv: what its runs trained with (asr.py's fsdd has 20 ms frames since)
        STEPS_1000 + ("model.frontend.channels=0",),
        parallel=1,
        needs_env="RNNBENCH_FSDD_DIR",
        table="decoders",
        table_args=DECODERS,
        smoke_table_args=SMOKE_DECODERS,
    ),
    "asr_families_phrases": Entry(
        f"{ASR}:ctc_bilstm_phrases",
        "families",
        STEPS_1000,
        parallel=2,
        smoke_overrides=SMOKE_DATA,
        decode_speed=True,
    ),
    "asr_families_phrases_seed0": Entry(
        f"{ASR}:ctc_bilstm_phrases",
        "families_seed0",
        STEPS_1000,
        parallel=2,
        smoke_overrides=SMOKE_DATA,
        decode_speed=True,
    ),
    "asr_families_phrases_lstm_seed0": Entry(
        f"{ASR}:ctc_bilstm_phrases",
        "families_lstm_seed0",
        STEPS_1000,
        parallel=2,
        smoke_overrides=SMOKE_DATA,
        decode_speed=True,
    ),
    "asr_families_fsdd": Entry(
        f"{ASR}:ctc_bilstm_fsdd",
        "families",
        STEPS_1000,
        parallel=2,
        needs_env="RNNBENCH_FSDD_DIR",
        decode_speed=True,
    ),
    **{  # one cell's 4 families, 3 seeds: asr_families_fsdd_lstm, _gru, _mingru
        f"asr_families_fsdd_{cell}": Entry(
            f"{ASR}:ctc_bilstm_fsdd",
            f"families_{cell}",
            STEPS_1000,
            parallel=2,
            needs_env="RNNBENCH_FSDD_DIR",
            decode_speed=True,
        )
        for cell in ("lstm", "gru", "mingru")
    },
    "asr_families_fsdd_lstm_seed0": Entry(
        f"{ASR}:ctc_bilstm_fsdd",
        "families_lstm_seed0",
        STEPS_1000,
        parallel=2,
        needs_env="RNNBENCH_FSDD_DIR",
        decode_speed=True,
    ),
    # the joint CTC/attention recognisers of asr_families_fsdd_<cell> decoded three ways:
    # greedy, beam 10, beam 10 + CTC prefix scores (the toolkits' joint decoding)
    "joint_decoders_fsdd_gru": Entry(
        f"{ASR}:joint_bigru_fsdd",
        "decoders",
        STEPS_1000,
        parallel=2,
        needs_env="RNNBENCH_FSDD_DIR",
        table="attention_decoders",
        table_args=JOINT_DECODERS,
        smoke_table_args=SMOKE_JOINT_DECODERS,
        note=JOINT_RUNS_REUSED.format(cell="gru"),
    ),
    "joint_decoders_fsdd_lstm": Entry(  # trained by its own sweep: asr_families_fsdd_lstm's
        f"{ASR}:joint_bilstm_fsdd",  # joint row's configuration
        "decoders",
        STEPS_1000,
        parallel=1,
        needs_env="RNNBENCH_FSDD_DIR",
        table="attention_decoders",
        table_args=JOINT_DECODERS,
        smoke_table_args=SMOKE_JOINT_DECODERS,
    ),
    "joint_decoders_phrases_lstm_seed0": Entry(
        f"{ASR}:joint_bilstm_phrases",
        "decoders_seed0",
        STEPS_1000,
        parallel=1,
        smoke_overrides=SMOKE_DATA,
        table="attention_decoders",
        table_args=JOINT_DECODERS,
        smoke_table_args=SMOKE_JOINT_DECODERS,
    ),
    # synthesis (issue 15): decoder cells of the small Tacotron 2 on one eSpeak voice, judged
    # by the BiGRU CTC recogniser of slu_pipeline_gru_seed0 (trained on other voices)
    "tts_decoder_cells": tts_entry("experiments/configs/tts.py", "decoder_cells", STEPS_2000),
    # the GRU decoder at 3, 5 and 8 frames per step
    "tts_gru_reductions": tts_entry(
        "experiments/configs/tts.py:gru", "reductions", STEPS_2000, parallel=2
    ),
    # the GRU decoder trained twice as long, scored at 2,000 and 4,000 steps
    "tts_gru_4000": tts_entry(
        "experiments/configs/tts.py",
        "gru",
        ("checkpoint_every=2000", "eval_every=2000", "num_steps=4000"),
        "--steps=2000,4000",
    ),
    # the GRU decoder of tts_decoder_cells (the same run, retrained) scored with the prenet's
    # dropout on in free running, as Tacotron 2 does, and off
    "tts_gru_prenet_dropout": tts_entry(
        "experiments/configs/tts.py", "gru", STEPS_2000, "--prenet_dropout=on,off"
    ),
    # the GRU decoder trained with scheduled sampling (p = 0.25, 0.5, 0.75), scored with the
    # prenet's dropout on and off; its p = 0 baseline is tts_gru_prenet_dropout
    "tts_gru_scheduled_sampling": tts_entry(
        "experiments/configs/tts.py:gru",
        "scheduled_sampling",
        STEPS_2000,
        "--prenet_dropout=on,off",
    ),
    # understanding (issue 14): direct (audio -> meaning) and pipeline (recogniser -> text
    # parser), the config's 3,000 steps
    "slu_direct_gru_seed0": Entry(
        "experiments/configs/slu.py",
        "direct_gru_seed0",
        parallel=1,
        smoke_overrides=SMOKE_DATA,
    ),
    "slu_best_direct_gru_seeds12": Entry(
        "experiments/configs/slu.py",
        "best_direct_gru_seeds12",
        parallel=1,
        smoke_overrides=SMOKE_DATA,
    ),
    "slu_best_direct_gru_20k": Entry(
        "experiments/configs/slu.py",
        "best_direct_gru_3seeds",
        overrides=SLU_20K,
        parallel=1,
        smoke_overrides=SMOKE_DATA,
    ),
    "slu_best_direct_cells_seed0": Entry(
        "experiments/configs/slu.py",
        "best_direct_cells_seed0",
        overrides=SLU_20K,
        parallel=1,
        smoke_overrides=SMOKE_DATA,
    ),
    "slu_best_direct_gru_phrasings_20k": Entry(
        "experiments/configs/slu.py",
        "best_direct_gru_phrasings_3seeds",
        overrides=SLU_20K,
        parallel=1,
        smoke_overrides=SMOKE_DATA,
    ),
    "slu_pipeline_gru_20k_seed0": Entry(
        "experiments/configs/slu.py",
        "recogniser_gru_voices_seed0",
        overrides=SLU_20K,
        parallel=1,
        smoke_overrides=SMOKE_DATA,
        table="slu_pipeline",
    ),
    "slu_pipeline_gru_seed0": Entry(
        "experiments/configs/slu.py",
        "recognisers_gru_seed0",
        parallel=1,
        smoke_overrides=SMOKE_DATA,
        table="slu_pipeline",
    ),
}


@dataclasses.dataclass(frozen=True)
class Program:
    """A table that its own program trains for and writes (not a sweep + report): reproduce
    runs `python -m MODULE --workdir=<workdir>/NAME --out=<out_dir>/NAME`, and `--render_only`
    passes on to it."""

    module: str  # e.g. experiments.transfer
    needs_env: str | None = None  # environment variable the program reads (data location)
    note: str | None = None


PROGRAMS = {
    # synthetic to real (issue 17): synth_commands corpus variants scored on real FSDD digits
    "transfer": Program("experiments.transfer", needs_env="RNNBENCH_FSDD_DIR"),
}
SMOKE_OVERRIDES = grid.TINY_RUN
SMOKE_SEEDS = (0, 1)
SMOKE_CONFIGS = 2  # configurations kept from the sweep's grid (each with SMOKE_SEEDS)

_NAME_HELP = ", ".join([*SWEEPS, *PROGRAMS])
_SMOKE = flags.DEFINE_bool(
    "smoke",
    False,
    "Tiny end-to-end run under <workdir>/smoke/ that checks the produced table; for CI.",
)
_DRY_RUN = flags.DEFINE_bool(
    "dry_run", False, "Print the exact sweep and report commands; run nothing."
)
_RENDER_ONLY = flags.DEFINE_bool(
    "render_only",
    False,
    "Re-render the table's .md, .csv and .json "
    "from its saved JSON (<out_dir>/NAME.json), with this entry's "
    "reproduce command and runner settings; train nothing.",
)
_WORKDIR = flags.DEFINE_string("workdir", "runs", "Parent of the sweep directory.")
_OUT_DIR = flags.DEFINE_string(
    "out_dir",
    None,
    "Where the table and plots go (default results/, or <workdir>/smoke/results with --smoke).",
)
_PARALLEL = flags.DEFINE_integer(
    "parallel", None, "Runs at a time (default: the entry's; it moves only the speed columns)."
)


def sweep_command(
    config: str,
    sweep: str,
    sweep_dir: str,
    *,
    parallel: int | None = None,
    vmap_seeds: bool | None = None,
    overrides: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The sweep runner's command line. Flags relied on: --config, --sweep, --workdir,
    --parallel, --vmap_seeds, repeated --override=key=value (applied to every run) and, with
    --smoke, --wandb=disabled."""
    cmd = [
        sys.executable,
        "-m",
        "experiments.sweep",
        f"--config={config}",
        f"--sweep={sweep}",
        f"--workdir={sweep_dir}",
    ]
    if parallel:
        cmd.append(f"--parallel={parallel}")
    if vmap_seeds is not None:
        cmd.append(f"--vmap_seeds={'true' if vmap_seeds else 'false'}")
    return cmd + [f"--override={o}" for o in overrides] + list(extra)


def runner_settings(entry: Entry, parallel: int | None = None) -> dict:
    """The sweep runner's settings an entry's table was made with (for its header)."""
    out = {
        "backend": "local",
        "parallel": parallel or entry.parallel,
        "vmap_seeds": entry.vmap_seeds,
    }
    return {**out, "note": entry.note} if entry.note else out


def table_commands(
    entry: Entry, sweep_dir: str, out: str, runs: list[str] = (), smoke: bool = False
) -> list[list[str]]:
    """The commands that make the table from the finished runs of `sweep_dir` (`runs`: their
    names): the decoder comparison, or the decode-speed step (if any) and the report."""
    if entry.table in DECODER_TABLES:
        args = entry.smoke_table_args if smoke and entry.smoke_table_args else entry.table_args
        workdirs = ",".join(os.path.join(sweep_dir, r) for r in runs)
        return [
            [
                "python",
                "-m",
                TABLE_PROGRAMS[entry.table],
                f"--workdirs={workdirs}",
                f"--out={out}",
                *args,
            ]
        ]
    if entry.table == "tts":
        judge = [] if smoke or not entry.judge else [f"--asr_workdir={judge_dir(entry, sweep_dir)}"]
        return [
            [
                "python",
                "-m",
                "experiments.tts_bench",
                f"--sweep_dir={sweep_dir}",
                *judge,
                f"--out={out}",
                *(entry.smoke_table_args if smoke and entry.smoke_table_args else entry.table_args),
            ]
        ]
    cmds = []
    if entry.table == "slu_pipeline":
        cmds.append(["python", "-m", "experiments.slu_pipeline", f"--sweep_dir={sweep_dir}"])
    if entry.decode_speed:
        cmds.append(
            ["python", "-m", "experiments.decoders", f"--sweep_dir={sweep_dir}", "--speed_only"]
        )
    return cmds + [shlex.split(report_lib.report_command(sweep_dir, out, entry.reference))]


def judge_dir(entry: Entry, sweep_dir: str) -> str:
    """The judge run's directory: beside this entry's sweep, in its own entry's sweep."""
    return os.path.join(os.path.dirname(sweep_dir), *entry.judge)


def commands(
    name: str, *, workdir: str = "runs", out_dir: str = "results", parallel: int | None = None
) -> list[list[str]]:
    """The exact commands `reproduce(name)` runs: the sweep, then what makes the table (the
    report, or the decoder comparison)."""
    entry = SWEEPS[name]
    sweep_dir, out = os.path.join(workdir, name), os.path.join(out_dir, name)
    sweep = sweep_command(
        entry.config,
        entry.sweep,
        sweep_dir,
        parallel=parallel or entry.parallel,
        vmap_seeds=entry.vmap_seeds,
        overrides=entry.overrides,
    )
    runs = grid.run_names(load_grid(entry)) if entry.table in DECODER_TABLES else []
    return [sweep, *table_commands(entry, sweep_dir, out, runs)]


def display(cmd: list[str]) -> str:
    """A command line as a reader types it: `python`, not this interpreter's path."""
    return shlex.join(["python" if cmd[0] == sys.executable else cmd[0], *cmd[1:]])


def program_command(
    name: str, *, workdir: str | None = "runs", out_dir: str = "results"
) -> list[str]:
    """The command of a PROGRAMS entry: its module with --workdir (left out for None, as when
    re-rendering) and --out."""
    cmd = ["python", "-m", PROGRAMS[name].module]
    if workdir is not None:
        cmd.append(f"--workdir={os.path.join(workdir, name)}")
    return [*cmd, f"--out={os.path.join(out_dir, name)}"]


def reproduce_command(name: str, *flags_: str) -> str:
    """`python -m experiments.reproduce NAME [flags]`, with the data variable it needs."""
    entry = SWEEPS.get(name) or PROGRAMS[name]
    env = f"{entry.needs_env}=/path/to/free-spoken-digit-dataset " if entry.needs_env else ""
    return env + shlex.join(["python", "-m", "experiments.reproduce", name, *flags_])


def load_grid(entry: Entry) -> list[dict]:
    """The sweep's list of override dicts, from the config file's sweeps()."""
    from rnnbench import sweep as sweep_lib

    _, _, module, _ = sweep_lib.load_config_module(entry.config)
    table = module.sweeps() if hasattr(module, "sweeps") else {}
    if entry.sweep not in table:
        raise sweep_lib.SweepError(
            f"{entry.config.split(':')[0]} has no sweep {entry.sweep!r} in its sweeps() (known: "
            f"{', '.join(table) or 'none'}); the reproduce entry needs it"
        )
    return grid.as_grid(table[entry.sweep])


def smoke_grid(
    overrides: list[dict], seeds=SMOKE_SEEDS, configs: int = SMOKE_CONFIGS
) -> list[dict]:
    """The first `configs` configurations of a grid (overrides minus seed), each at `seeds`."""
    kept, seen = [], []
    for d in overrides:
        if "seed" in d and d["seed"] not in seeds:
            continue
        key = grid.config_key(d)
        if key not in seen:
            if len(seen) == configs:
                continue
            seen.append(key)
        kept.append(d)
    return kept


def write_smoke_config(entry: Entry, overrides: list[dict], path: str) -> None:
    """A config file whose get_config is `entry.config`'s and whose sweeps() holds only
    `overrides` under the same sweep name: the smoke subset, with the sweep runner's CLI as it
    is."""
    base = os.path.abspath(entry.config.split(":")[0])
    text = f'''"""Generated by `python -m experiments.reproduce --smoke`: sweep {entry.sweep!r} of
{entry.config}, cut to seeds {list(SMOKE_SEEDS)} and its first {SMOKE_CONFIGS} configurations."""

import importlib.util
import json

_spec = importlib.util.spec_from_file_location("_smoke_base_config", {base!r})
_base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_base)
GRID = json.loads({json.dumps(overrides)!r})


def get_config(variant=None):
    return _base.get_config(variant) if variant else _base.get_config()


def sweeps():
    return {{{entry.sweep!r}: GRID}}
'''
    atomic.write_text(path, text)


def run_sweep(cmd: list[str]) -> int:
    """Runs the sweep runner in the foreground (its output goes straight to ours)."""
    print("+ " + display(cmd), flush=True)
    return subprocess.run(cmd, check=False).returncode


def run_step(cmd: list[str]) -> int:
    """Runs a `python -m ...` table step (decode speed, decoder comparison) with this
    interpreter, in the foreground."""
    print("+ " + display(cmd), flush=True)
    return subprocess.run(
        [sys.executable, *cmd[1:]] if cmd[0] == "python" else cmd, check=False
    ).returncode


def check_decoders_table(
    rep: dict, runs: int, expected: tuple[str, ...] = ("greedy", "beam", "beam_lm")
) -> list[str]:
    """Problems with a smoke decoder comparison: the `expected` rows (greedy, beam and beam +
    LM), each from every run, and the Markdown file holding them."""
    problems = []
    if [r["decoder"] for r in rep["rows"]] != list(expected):
        problems.append(
            f"decoder rows {[r['decoder'] for r in rep['rows']]}, expected {', '.join(expected)}"
        )
    for row in rep["rows"]:
        if row["test_cer"]["n"] != runs:
            problems.append(
                f"row {row['decoder']}: test CER from {row['test_cer']['n']} runs, expected {runs}"
            )
    return problems + table_rows_problems(rep["files"]["md"], len(rep["rows"]))


def check_attention_decoders_table(rep: dict, runs: int) -> list[str]:
    """check_decoders_table for an attention comparison: greedy, beam and (runs with a CTC head)
    beam + CTC rows."""
    joint = rep["config"]["model"].get("ctc_weight", 0.0) > 0
    return check_decoders_table(rep, runs, ("greedy", "beam") + (("beam_ctc",) if joint else ()))


def table_lines(md_path: str) -> list[str]:
    """The Markdown table lines of a file (header and rows; each starts with "| ")."""
    with open(md_path) as f:
        return [line for line in f.read().splitlines() if line.startswith("| ")]


def table_rows_problems(md_path: str, rows: int) -> list[str]:
    """A problem when the Markdown file's table does not hold `rows` rows under its header."""
    found = len(table_lines(md_path)) - 1
    return [] if found == rows else [f"{md_path}: {found} table rows, expected {rows}"]


def check_table(rep: dict, sweep_dir: str, *, expected_runs: int | None = None) -> list[str]:
    """Problems with a smoke report: one row per configuration of sweep.json, every run of it
    finished (n = expected), the Markdown table holds those rows, the plots exist."""
    problems = []
    with open(os.path.join(sweep_dir, "sweep.json")) as f:
        runs = json.load(f)["runs"]
    groups = {k: len(v) for k, v in grid.group_by_config(runs, lambda r: r["overrides"]).items()}
    if not runs:
        problems.append("sweep.json lists no runs")
    if expected_runs is not None and len(runs) != expected_runs:
        problems.append(f"sweep.json lists {len(runs)} runs, expected {expected_runs}")
    if len(rep["rows"]) != len(groups):
        problems.append(f"{len(rep['rows'])} table rows for {len(groups)} configurations")
    for row in rep["rows"]:
        want = groups.get(grid.config_key(row["config"]))
        if (row["n"], row["expected"]) != (want, want):
            problems.append(
                f"row {row['label']}: n={row['n']}/{row['expected']}, expected "
                f"{want}/{want} (failed: {row['failed']}, missing: {row['missing']})"
            )
        if row["metrics"][rep["primary_metric"]]["n"] != want:
            problems.append(
                f"row {row['label']}: {rep['primary_metric']} from "
                f"{row['metrics'][rep['primary_metric']]['n']} runs, expected {want}"
            )
    table = table_lines(rep["files"]["md"])
    problems += table_rows_problems(rep["files"]["md"], len(groups))  # one per configuration
    for n in set(groups.values()):
        if sum(f"| {n}/{n} |" in line for line in table) != sum(v == n for v in groups.values()):
            problems.append(f"{rep['files']['md']}: rows with n = {n}/{n} do not match sweep.json")
    for key in ("csv", "json", "curves", "params"):
        path = rep["files"][key]
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            problems.append(f"{path} is missing or empty")
    for key in ("curves", "params"):
        path = rep["files"][key]
        if os.path.exists(path):
            with open(path, "rb") as f:
                if f.read(8) != b"\x89PNG\r\n\x1a\n":
                    problems.append(f"{path} is not a PNG")
    return problems


def _check_name(name: str) -> Entry | Program | None:
    if name not in SWEEPS and name not in PROGRAMS:
        print(f"error: unknown sweep {name!r}; known: {_NAME_HELP}", file=sys.stderr)
        return None
    return SWEEPS.get(name) or PROGRAMS[name]


def _program(name: str, *, action: str, workdir: str, out_dir: str | None, step_runner=None) -> int:
    """dry_run / render_only / reproduce of a PROGRAMS entry."""
    entry = PROGRAMS[name]
    render = action == "render_only"
    cmd = program_command(name, workdir=None if render else workdir, out_dir=out_dir or "results")
    if action == "dry_run":
        print(f"# {reproduce_command(name)}: {entry.module} trains and writes its own table")
        print(display(cmd))
        return 0
    if render:
        cmd.append("--render_only")
    elif entry.needs_env and not os.environ.get(entry.needs_env):
        print(
            f"error: {name} reads its data from ${entry.needs_env}; set it to the dataset "
            f"directory (see {entry.module})",
            file=sys.stderr,
        )
        return 2
    return (step_runner or run_step)(cmd)


def dry_run(
    name: str,
    *,
    workdir: str = "runs",
    out_dir: str | None = None,
    parallel: int | None = None,
    out=None,
) -> int:
    """Prints the exact commands `reproduce(name)` would run; runs nothing."""
    out = out or sys.stdout
    entry = _check_name(name)
    if entry is None:
        return 2
    if isinstance(entry, Program):
        return _program(name, action="dry_run", workdir=workdir, out_dir=out_dir)
    from rnnbench.sweep import SweepError

    try:
        runs = load_grid(entry)
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = {
        "decoders": "; the table: experiments.decoders on its runs",
        "attention_decoders": "; the table: experiments.attention_decoders on its runs",
        "tts": "; the table: experiments.tts_bench on its runs",
    }.get(entry.table, "")
    print(
        f"# {reproduce_command(name)}: {entry.config} sweep {entry.sweep!r}, {len(runs)} runs, "
        f"{'seeds vmapped' if entry.vmap_seeds else 'one process per run'}{table}"
        + (f". {entry.note}" if entry.note else ""),
        file=out,
    )
    for cmd in commands(name, workdir=workdir, out_dir=out_dir or "results", parallel=parallel):
        print(display(cmd), file=out)
    return 0


def render_only(name: str, *, out_dir: str | None = None) -> int:
    """Re-renders results/NAME.{md,csv,json} from results/NAME.json with this entry's reproduce
    command, commands and runner settings; every number stays as the JSON holds it."""
    entry = _check_name(name)
    if entry is None:
        return 2
    if isinstance(entry, Program):
        return _program(name, action="render_only", workdir="runs", out_dir=out_dir)
    out_dir = out_dir or "results"
    path = os.path.join(out_dir, name + ".json")
    if entry.table in TABLE_PROGRAMS:
        try:
            rep = table_program(entry.table).render(
                path,
                reproduce_command=reproduce_command(name),
                commands=[display(c) for c in commands(name, out_dir=out_dir)],
            )
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{name}: re-rendered {rep['files']['md']} and {rep['files']['json']} from the JSON")
        return 0
    try:
        rep = report_lib.rerender(
            path,
            reproduce_command=reproduce_command(name),
            commands=[display(c) for c in commands(name, out_dir=out_dir)],
            runner=runner_settings(entry),
        )
    except report_lib.ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{name}: re-rendered {rep['files']['md']}, {rep['files']['csv']} and "
        f"{rep['files']['json']} from the JSON (plots left as they are)"
    )
    return 0


def reproduce(
    name: str,
    *,
    smoke: bool = False,
    workdir: str = "runs",
    out_dir: str | None = None,
    parallel: int | None = None,
    sweep_runner=run_sweep,
    step_runner=run_step,
) -> int:
    """Sweep + table (+ the smoke check); returns the process exit code."""
    entry = _check_name(name)
    if entry is None:
        return 2
    if isinstance(entry, Program):
        if smoke:
            print(f"error: {name} has no --smoke (its own tests run it small)", file=sys.stderr)
            return 2
        return _program(
            name, action="run", workdir=workdir, out_dir=out_dir, step_runner=step_runner
        )
    if entry.needs_env and not os.environ.get(entry.needs_env):
        print(
            f"error: {name} reads its data from ${entry.needs_env}; set it to the dataset "
            f"directory (see {entry.config})",
            file=sys.stderr,
        )
        return 2
    if entry.judge and not smoke:
        judge = judge_dir(entry, os.path.join(workdir, name))
        if not os.path.exists(os.path.join(judge, "final.json")):
            print(
                f"error: {name} is judged by the recogniser {judge}, which has not finished; "
                f"run `{reproduce_command(entry.judge[0])}` first",
                file=sys.stderr,
            )
            return 2
    expected_runs = None
    runner = runner_settings(entry, parallel)
    if smoke:
        smoke_dir = os.path.join(workdir, "smoke")
        sweep_dir = os.path.join(smoke_dir, name)
        out_dir = out_dir or os.path.join(smoke_dir, "results")
        if os.path.exists(os.path.join(sweep_dir, "sweep.json")):
            shutil.rmtree(sweep_dir)  # a smoke run proves the whole path: start from nothing
        runs = smoke_grid(load_grid(entry))
        expected_runs = len(runs)
        config = os.path.join(smoke_dir, f"{name}_config.py")
        write_smoke_config(entry, runs, config)
        _, colon, variant = entry.config.partition(":")
        config += colon + variant  # the entry's variant, as its full sweep builds it
        # the grid's own values win: leave out shrinking overrides of keys the sweep varies
        varied = {k for d in runs for k in d}
        overrides = tuple(
            o for o in SMOKE_OVERRIDES + entry.smoke_overrides if o.split("=", 1)[0] not in varied
        )
        cmds = [
            sweep_command(
                config,
                entry.sweep,
                sweep_dir,
                parallel=runner["parallel"],
                vmap_seeds=entry.vmap_seeds,
                overrides=overrides,
                extra=("--wandb=disabled",),
            )
        ]
        cmds += table_commands(
            entry, sweep_dir, os.path.join(out_dir, name), grid.run_names(runs), smoke=True
        )
    else:
        sweep_dir = os.path.join(workdir, name)
        out_dir = out_dir or "results"
        cmds = commands(name, workdir=workdir, out_dir=out_dir, parallel=parallel)
    rc = sweep_runner(cmds[0])
    if rc:
        print(
            f"warning: the sweep runner exited with code {rc}; reporting what there is",
            file=sys.stderr,
        )
    for cmd in cmds[1:-1]:  # the decode-speed step: a failure leaves its column empty
        if step_runner(cmd):
            print(f"warning: {display(cmd)} failed; the table goes on without it", file=sys.stderr)

    out = os.path.join(out_dir, name)
    args = ["--smoke"] if smoke else []
    if workdir != "runs":
        args.append(f"--workdir={workdir}")
    if out_dir != ("results" if not smoke else os.path.join(workdir, "smoke", "results")):
        args.append(f"--out_dir={out_dir}")
    if parallel and parallel != entry.parallel:
        args.append(f"--parallel={parallel}")
    shown = [display(c) for c in cmds]
    if entry.table in TABLE_PROGRAMS:
        return (
            _program_table(
                entry.table,
                cmds[-1],
                out,
                shown,
                reproduce_command(name, *args),
                expected_runs if smoke else None,
                step_runner,
            )
            or rc
        )
    report_cmd = report_lib.report_command(sweep_dir, out, entry.reference)
    try:
        rep = report_lib.make_report(
            sweep_dir,
            out,
            reference=entry.reference,
            report_command=report_cmd,
            reproduce_command=reproduce_command(name, *args),
            commands=shown,
            runner=runner,
        )
    except (report_lib.ReportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return rc or 1
    for w in rep["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(
        f"{name}: {len(rep['rows'])} configurations, {rep['num_done']}/{rep['num_runs']} runs "
        f"finished -> {rep['files']['md']}"
    )
    if smoke:
        problems = check_table(rep, sweep_dir, expected_runs=expected_runs)
        for p in problems:
            print(f"smoke check failed: {p}", file=sys.stderr)
        if problems:
            return 1
        print(f"smoke check passed: {len(rep['rows'])} rows, every run finished")
    return rc


# tables that a program writes from the sweep's runs (its `render` re-renders them from their
# JSON), by Entry.table
TABLE_PROGRAMS = {
    "decoders": "experiments.decoders",
    "attention_decoders": "experiments.attention_decoders",
    "tts": "experiments.tts_bench",
}
DECODER_TABLES = ("decoders", "attention_decoders")  # made from the runs' --workdirs


def table_program(kind: str):
    """The module that writes and re-renders an Entry.table = `kind` table."""
    import importlib

    return importlib.import_module(TABLE_PROGRAMS[kind])


def check_tts_table(rep: dict, runs: int) -> list[str]:
    """Problems with a smoke TTS table: one row per run, each with finite teacher-forced and
    free-running numbers, and the Markdown file holding them."""
    import math

    problems = []
    if len(rep["runs"]) != runs:
        problems.append(f"{len(rep['runs'])} TTS rows, expected {runs}")
    for row in rep["runs"]:
        for key in ("tf_mel_l1", "mcd_dtw_db"):
            if not math.isfinite(row[key]):
                problems.append(f"row {row['workdir']}: {key} is {row[key]}")
    return problems + table_rows_problems(rep["files"]["md"], len(rep["runs"]))


def _program_table(
    kind: str,
    cmd: list[str],
    out: str,
    shown: list[str],
    reproduce_cmd: str,
    smoke_runs: int | None,
    step_runner,
) -> int:
    """Runs the program that makes the table (experiments.decoders or experiments.tts_bench),
    then re-renders its header with the reproduce command and every command it ran (the
    program's JSON is its only input)."""
    program = table_program(kind)
    check = {
        "decoders": check_decoders_table,
        "attention_decoders": check_attention_decoders_table,
        "tts": check_tts_table,
    }[kind]
    rc = step_runner(cmd)
    if rc:
        print(f"error: {display(cmd)} exited with code {rc}", file=sys.stderr)
        return rc
    rep = program.render(out + ".json", commands=shown, reproduce_command=reproduce_cmd)
    rows = len(rep["rows"]) if kind in DECODER_TABLES else len(rep["runs"])
    print(f"{os.path.basename(out)}: {rows} rows -> {rep['files']['md']}")
    if smoke_runs is not None:
        problems = check(rep, smoke_runs)
        for p in problems:
            print(f"smoke check failed: {p}", file=sys.stderr)
        if problems:
            return 1
        print(f"smoke check passed: {rows} rows from {smoke_runs} runs")
    return 0


def main(argv):
    if len(argv) != 2:
        raise app.UsageError(
            f"usage: python -m experiments.reproduce NAME [--dry_run | "
            f"--render_only | --smoke] [--workdir=runs] [--parallel=N]; NAME is "
            f"one of {_NAME_HELP}"
        )
    if _DRY_RUN.value + _RENDER_ONLY.value + _SMOKE.value > 1:
        raise app.UsageError("--dry_run, --render_only and --smoke exclude each other")
    if _DRY_RUN.value:
        return dry_run(
            argv[1], workdir=_WORKDIR.value, out_dir=_OUT_DIR.value, parallel=_PARALLEL.value
        )
    if _RENDER_ONLY.value:
        return render_only(argv[1], out_dir=_OUT_DIR.value)
    return reproduce(
        argv[1],
        smoke=_SMOKE.value,
        workdir=_WORKDIR.value,
        out_dir=_OUT_DIR.value,
        parallel=_PARALLEL.value,
    )


if __name__ == "__main__":
    app.run(main)
