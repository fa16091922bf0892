"""Score trained TTS runs: teacher-forced and free-running mels, and intelligibility to our ASR.

  python -m experiments.tts_bench --workdir=runs/tts_lstm,runs/tts_gru,runs/tts_mingru \\
      --asr_workdir=runs/asr_phrases --out=results/tts/decoder_cells
  python -m experiments.tts_bench --sweep_dir=runs/tts_decoder_cells --asr_workdir=... --out=...
  python -m experiments.tts_bench --render_only --out=results/tts_decoder_cells  # from its JSON

For each run, on the first --num_utterances of its dataset's --split (the eSpeak reference
audio of sentences never said in training, same voice):
- teacher forced (the training objective's evaluation): mel L1 (natural-log mel units, after
  the post-net) and stop-token accuracy (per frame);
- free running (`tts.generate`, the run's `config.synthesis`): mel-cepstral distortion with
  DTW against the reference log-mel (`mcd_dtw`: cepstra c1..c24 of the log-amplitude mel
  spectrum, 10/ln10 * sqrt(2 * sum of squared differences), averaged over the DTW path), the
  synthesised/reference frame-count ratio, and how many utterances the stop token ended (the
  rest ran to max_seconds);
- intelligibility (with --asr_workdir, a recogniser run trained on other voices): its CER on
  the synthesised audio (Griffin-Lim), on the teacher-forced post-net mels through the same
  Griffin-Lim (what free running loses to drift is the difference), on the eSpeak reference
  audio, and on the reference log-mel through the same Griffin-Lim (the vocoder's own cost);
  the target is synthesised CER
  <= 2x reference CER. When the TTS runs speak one eSpeak voice (synth_phrases `voice=`), the
  recogniser's training split is loaded and a recogniser that heard that voice variant is
  refused (it would flatter the synthesis);
- training cost from the run's final.json (steps, train time, parameters).

Writes OUT.json (every number, per-utterance records, provenance), OUT.md (the table, headed by
this command and the provenance line) and OUT_<run>_<i>.png (eSpeak reference mel, synthesised
mel and the attention alignment, side by side) for the first --plots utterances; all atomic.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import app, flags, logging


def define_flags() -> None:
    """The command line (defined only when run as a program, so that importing this module, e.g.
    from the tests, does not clash with other entry points' flags)."""
    flags.DEFINE_list("workdir", None, "TTS run directories, comma-separated (one table row each).")
    flags.DEFINE_string(
        "sweep_dir",
        None,
        "A sweep directory: its finished runs (sweep.json), instead of --workdir.",
    )
    flags.DEFINE_bool("render_only", False, "Re-render OUT.md from OUT.json alone; score nothing.")
    flags.DEFINE_string(
        "asr_workdir",
        None,
        "A recogniser run (CTC, LAS or transducer) trained "
        "on other voices; without it intelligibility is not scored.",
    )
    flags.DEFINE_string("split", "test", "Split of each run's dataset to score.")
    flags.DEFINE_integer("num_utterances", 50, "Utterances scored per run (the first N).")
    flags.DEFINE_integer("batch_size", 16, "Utterances per generate / eval batch.")
    flags.DEFINE_integer("plots", 3, "Utterances pictured per run.")
    flags.DEFINE_integer("seed", 0, "Seed of the prenet dropout at inference.")
    flags.DEFINE_list(
        "prenet_dropout",
        None,
        "Prenet dropout in free running, comma-separated on / off, a row per setting (default: "
        "each run's config.synthesis.prenet_dropout; on, as in Tacotron 2).",
    )
    flags.DEFINE_list(
        "steps",
        None,
        "Checkpoint steps to score, comma-separated, one row each (default: each run's newest); "
        "every run must have them.",
    )
    flags.DEFINE_string(
        "out", "results/tts/bench", "Output prefix: OUT.json, OUT.md, OUT_<run>_<i>.png."
    )


N_MCEP = 25  # cepstral coefficients c0..c24; MCD uses c1..c24


# ----------------------------------------------------------------------------- distortion


def mel_cepstrum(log_mel: np.ndarray, n: int = N_MCEP) -> np.ndarray:
    """log-mel [T, M] (natural log of mel POWER) -> cepstra [T, n] of the log-amplitude mel
    spectrum: c_k = (1/M) sum_j 0.5 * log_mel_j * cos(pi k (j + 1/2) / M), the real cepstrum's
    scaling (the inverse DFT of an even log spectrum), so that the MCD formula's units hold; the
    mel filterbank stands in for SPTK's all-pass frequency warping."""
    m = log_mel.shape[-1]
    if n > m:
        raise ValueError(f"{n} cepstral coefficients need >= {n} mel channels, got {m}")
    k = np.arange(n)[:, None]
    j = np.arange(m)[None, :]
    dct = np.cos(np.pi * k * (2 * j + 1) / (2 * m)) / m
    return (0.5 * np.asarray(log_mel, np.float64)) @ dct.T


def dtw(cost: np.ndarray) -> tuple[float, int]:
    """Dynamic time warping over a cost matrix [N, K] with steps (1,0), (0,1), (1,1), each
    paying the cost of the cell it enters: -> (total cost of the cheapest path from (0, 0) to
    (N-1, K-1), its number of cells). Rows are solved as a running minimum (exact)."""
    cost = np.asarray(cost, np.float64)
    n, k = cost.shape
    if n == 0 or k == 0:
        raise ValueError(f"dtw needs a non-empty cost matrix, got shape {cost.shape}")
    acc = np.empty((n, k))
    prev = None
    for i in range(n):
        if prev is None:
            a = np.full(k, np.inf)
            a[0] = 0.0
        else:
            a = np.minimum(prev, np.concatenate([[np.inf], prev[:-1]]))
        csum = np.cumsum(cost[i])
        before = np.concatenate([[0.0], csum[:-1]])
        acc[i] = csum + np.minimum.accumulate(a - before)
        prev = acc[i]
    i, j, cells = n - 1, k - 1, 1
    while i > 0 or j > 0:
        moves = [(i - 1, j - 1), (i - 1, j), (i, j - 1)]
        i, j = min((m for m in moves if m[0] >= 0 and m[1] >= 0), key=lambda m: acc[m])
        cells += 1
    return float(acc[-1, -1]), cells


def mcd_dtw(log_mel_ref: np.ndarray, log_mel_syn: np.ndarray, n: int = N_MCEP) -> float:
    """Mel-cepstral distortion in dB between two log-mels [T, M] and [T', M] (any lengths),
    averaged over the frames of their DTW alignment; c0 (level) is left out."""
    a, b = mel_cepstrum(log_mel_ref, n)[:, 1:], mel_cepstrum(log_mel_syn, n)[:, 1:]
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    d = (10.0 / np.log(10.0)) * np.sqrt(2.0 * ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    total, cells = dtw(d)
    return total / cells


# ----------------------------------------------------------------------------- scoring


def train_seconds(workdir: str, step: int, final: dict) -> float | None:
    """Training time to `step`: final.json's train_time_s for the run's last step, else the
    time_s of the step's train record in metrics.jsonl (None if neither has it)."""
    if step == final.get("steps"):
        return final.get("train_time_s")
    path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if rec.get("step") == step and rec.get("split") == "train":
                    return rec.get("time_s")
    return None


def _subset(split, n: int):
    from rnnbench import data as data_lib

    n = min(n, len(split))
    return data_lib.Split(split.audio[:n], None, split.transcripts[:n], split.speakers[:n])


def reference_log_mels(config, clips) -> list[np.ndarray]:
    """The training targets' log-mel [T, M] of each int16 clip (floored as targets are)."""
    from rnnbench import features, tts
    from rnnbench.objectives import tts as objective

    settings = objective.mel_settings(config.features)
    out = []
    for clip in clips:
        x = clip.astype(np.float32)[None] / 32768.0
        lm, _ = features.log_mel(x, np.array([x.shape[1]]), **settings)
        out.append(np.maximum(np.asarray(lm)[0], tts.MEL_FLOOR))
    return out


def teacher_forced(synth, dataset, split, batch_size: int) -> dict:
    """The objective's teacher-forced evaluation on `split` (mel_l1, stop_accuracy, ...)."""
    import jax

    from rnnbench import input_pipeline
    from rnnbench.data import batching

    run = synth.run
    buckets = input_pipeline.buckets_for(run.config, dataset)
    acc = run.objective.new_accumulator(final=True)
    for batch in batching.eval_batches(
        split, batch_size=batch_size, buckets=buckets, encode=dataset.encode
    ):
        out = jax.device_get(run.eval_step(run.params, batch))
        run.objective.accumulate(acc, dataset, batch, out)
    return run.objective.summarize(acc, dataset)


def teacher_forced_log_mels(synth, split, batch_size: int) -> list[np.ndarray]:
    """Each utterance's post-net log-mel [T, M] under teacher forcing (no dropout), T its
    reference length: what the decoder makes when it is fed the true previous frames. Its mean
    absolute difference from `reference_log_mels` is the objective's TF mel L1."""
    from flax import nnx

    from rnnbench import synthesis, tts
    from rnnbench.objectives import tts as objective

    @nnx.jit
    def forward(model, ids, id_lengths, audio, audio_lengths):
        mels, lengths = objective.target_mels(synth.config.features, audio, audio_lengths)
        outputs, _ = model(ids, id_lengths, mels=mels, mel_lengths=lengths)
        return tts.denormalize_mels(outputs["mel_post"]), lengths

    out = []
    for s in range(0, len(split.transcripts), batch_size):
        clips = split.audio[s : s + batch_size]
        ids, id_lengths = synthesis.encode(synth, list(split.transcripts[s : s + batch_size]))
        audio_lengths = np.array([len(c) for c in clips], np.int32)
        width = -(-int(audio_lengths.max()) // 8000) * 8000  # 0.5 s steps: few compilations
        audio = np.zeros((len(clips), width), np.float32)
        for i, c in enumerate(clips):
            audio[i, : len(c)] = c.astype(np.float32) / 32768.0
        log_mel, lengths = forward(synth.model, ids, id_lengths, audio, audio_lengths)
        log_mel, lengths = np.asarray(log_mel), np.asarray(lengths)
        out += [log_mel[i, : lengths[i]] for i in range(len(clips))]
    return out


def free_running(synth, texts: list[str], batch_size: int, seed: int) -> dict:
    """Generate + Griffin-Lim in batches of `batch_size` (the last one padded by repeating, so
    every batch has one shape) -> lists: log_mel, audio, alignment, stopped, seconds."""
    from rnnbench import synthesis

    res = {"log_mel": [], "audio": [], "alignment": [], "stopped": [], "seconds": []}
    for s in range(0, len(texts), batch_size):
        chunk = texts[s : s + batch_size]
        padded = chunk + [chunk[-1]] * (batch_size - len(chunk))
        t0 = time.time()
        audio, out = synthesis.synthesize(synth, padded, seed=seed)
        per = (time.time() - t0) / len(padded)
        steps = -(-out["lengths"] // synth.model.reduction)
        for i in range(len(chunk)):
            n = int(out["lengths"][i])
            res["log_mel"].append(out["log_mel"][i, :n])
            res["audio"].append(audio[i])
            res["alignment"].append(out["alignments"][i, : steps[i], : out["text_lengths"][i]])
            res["stopped"].append(bool(out["stopped"][i]))
            res["seconds"].append(per)
    return res


def asr_texts(asr, clips_float: list[np.ndarray], batch_size: int) -> list[str]:
    from rnnbench import inference
    from rnnbench.data.audio import to_int16

    clips = [to_int16(x) if x.dtype != np.int16 else x for x in clips_float]
    return inference.predict(asr, clips, batch_size=batch_size)


def score_run(
    workdir: str,
    *,
    asr,
    split_name: str,
    num: int,
    batch_size: int,
    seed: int,
    dataset=None,
    reference_cache: dict | None = None,
    step: int | None = None,
    prenet_dropout: bool | None = None,
) -> dict:
    """Every metric of one TTS run at checkpoint `step` (None: its newest; module docstring) ->
    {summary..., "utterances": [...], "examples": [...] (arrays for the pictures)}. `dataset`:
    the run's dataset (loaded from its config when None). `prenet_dropout`: keep the prenet's
    dropout on in free running (None: the run's config.synthesis setting)."""
    from rnnbench import input_pipeline, metrics, synthesis

    synth = synthesis.load(workdir, step)
    if prenet_dropout is not None:
        synth.settings["prenet_dropout"] = prenet_dropout
    config = synth.config
    if dataset is None:
        dataset = input_pipeline.load_dataset(config)
    if split_name not in dataset.splits:
        raise ValueError(
            f"dataset {dataset.name} has no split {split_name!r}; it has {sorted(dataset.splits)}"
        )
    split = _subset(dataset.splits[split_name], num)
    texts = list(split.transcripts)
    tf = teacher_forced(synth, dataset, split, batch_size)
    fr = free_running(synth, texts, batch_size, seed)
    refs = reference_log_mels(config, split.audio)
    n_mcep = min(N_MCEP, refs[0].shape[-1])  # a run with fewer mel channels: fewer cepstra
    mcd = [mcd_dtw(r, s, n_mcep) for r, s in zip(refs, fr["log_mel"])]
    ratio = [len(s) / max(len(r), 1) for r, s in zip(refs, fr["log_mel"])]
    final = {}
    path = os.path.join(workdir, "final.json")
    if os.path.exists(path):
        with open(path) as f:
            final = json.load(f)
    row = {
        "workdir": workdir,
        "step": synth.run.step,
        "prenet_dropout": bool(synth.settings["prenet_dropout"]),  # in free running
        "decoder_cell": config.model.get("decoder_cell") or config.model.cell,
        "dataset": dataset.name,
        "data_options": dict(config.data.get("options") or {}),
        "split": split_name,
        "utterances_scored": len(texts),
        "num_params": final.get("num_params"),
        "steps": final.get("steps"),
        "train_time_s": train_seconds(workdir, synth.run.step, final),
        "run_provenance": final.get("provenance"),  # the training run's commit, machine, load
        "tf_mel_l1": tf["mel_l1"],
        "tf_stop_accuracy": tf["stop_accuracy"],
        "tf_mel_mse": tf["mel_mse"],
        "mcd_dtw_db": float(np.nanmean(mcd)),
        "mcd_coefficients": n_mcep - 1,
        "frames_ratio": float(np.mean(ratio)),
        "stopped": int(np.sum(fr["stopped"])),
        "synthesis_s_per_utterance": float(np.mean(fr["seconds"])),
    }
    records = [
        {
            "text": t,
            "reference_frames": len(r),
            "synth_frames": len(s),
            "stopped": st,
            "mcd_dtw_db": m,
        }
        for t, r, s, st, m in zip(texts, refs, fr["log_mel"], fr["stopped"], mcd)
    ]
    if asr is not None:
        key = json.dumps(
            [dataset.name, split_name, len(texts), row["data_options"]], sort_keys=True, default=str
        )
        cache = reference_cache if reference_cache is not None else {}
        if key not in cache:
            lengths = np.array([len(r) for r in refs])
            padded = np.zeros((len(refs), lengths.max(), refs[0].shape[-1]), np.float32)
            for i, r in enumerate(refs):
                padded[i, : len(r)] = r
            vocoded = synthesis.to_audio(synth, padded, lengths)  # the synthesis' Griffin-Lim
            cache[key] = {
                "reference": asr_texts(asr, list(split.audio), batch_size),
                "vocoded": asr_texts(asr, vocoded, batch_size),
            }
        tf_mels = teacher_forced_log_mels(synth, split, batch_size)
        lengths = np.array([len(x) for x in tf_mels])
        padded = np.zeros((len(tf_mels), lengths.max(), tf_mels[0].shape[-1]), np.float32)
        for i, x in enumerate(tf_mels):
            padded[i, : len(x)] = x
        hyp = {
            "synth": asr_texts(asr, fr["audio"], batch_size),
            "tf": asr_texts(asr, synthesis.to_audio(synth, padded, lengths), batch_size),
            **cache[key],
        }
        for name, h in hyp.items():
            rates = metrics.error_rates(texts, h)
            row[f"cer_{name}"], row[f"wer_{name}"] = rates["cer"], rates["wer"]
            for rec, x in zip(records, h):
                rec[f"asr_{name}"] = x
        ref = row["cer_reference"]
        row["cer_ratio"] = row["cer_synth"] / ref if ref > 0 else None  # None: reference perfect
        row["within_2x"] = bool(row["cer_synth"] <= 2.0 * row["cer_reference"])
    examples = [
        {"text": t, "reference": r, "synth": s, "alignment": a}
        for t, r, s, a in zip(texts, refs, fr["log_mel"], fr["alignment"])
    ]
    return dict(row, utterances=records, examples=examples)


# ----------------------------------------------------------------------------- output


def plot_example(example: dict, path: str, title: str) -> None:
    """eSpeak reference log-mel | synthesised log-mel | alignment (characters x decoder
    steps), side by side, written atomically."""
    from matplotlib.figure import Figure

    from rnnbench import atomic

    ref, syn, align = example["reference"], example["synth"], example["alignment"]
    fig = Figure(figsize=(15, 3.6), layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=[max(len(ref), 1), max(len(syn), 1), max(len(syn), 1)])
    lo = min(float(ref.min()), float(syn.min()) if syn.size else 0.0)
    hi = max(float(ref.max()), float(syn.max()) if syn.size else 0.0)
    for ax, m, name in ((axes[0], ref, "eSpeak reference"), (axes[1], syn, "synthesised")):
        if m.size:
            ax.imshow(
                m.T,
                aspect="auto",
                origin="lower",
                interpolation="nearest",
                vmin=lo,
                vmax=hi,
                cmap="magma",
            )
        ax.set_title(f"{name} ({len(m)} frames)")
        ax.set_xlabel("frame")
        ax.set_ylabel("mel channel")
    if align.size:
        axes[2].imshow(
            align.T,
            aspect="auto",
            origin="lower",
            interpolation="nearest",
            vmin=0.0,
            cmap="viridis",
        )
    axes[2].set_title("attention")
    axes[2].set_xlabel("decoder step")
    axes[2].set_ylabel("character")
    text = example["text"]
    if 0 < len(text) <= 60:
        axes[2].set_yticks(range(len(text)), list(text), fontsize=6)
    fig.suptitle(title)
    atomic.save_figure(fig, path)


def _fmt(v, spec: str = ".3f") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return format(v, spec) if isinstance(v, float) else str(v)


def markdown(result: dict) -> str:
    """The table of a bench result (its JSON object), headed by the command that reproduces it."""
    from rnnbench import provenance

    rows, judge = result["runs"], result.get("judge")
    lines = [
        f"# {os.path.basename(result.get('out') or 'tts_bench')}: TTS decoder cells, "
        "teacher-forced, free-running and intelligibility",
        "",
        "Generated by `experiments/tts_bench.py`; do not edit by hand. Reproduce with:",
        "",
        "```",
        result.get("reproduce_command") or result["command"],
        "```",
        "",
    ]
    if result.get("reproduce_command"):
        lines += ["which runs:", "", "```", *result.get("commands", []), "```", ""]
    lines += [f"Provenance: {provenance.one_line(result['provenance'])}", ""]
    if rows:
        r0 = rows[0]
        opts = r0.get("data_options") or {}
        lines += [
            (
                f"Scored: the first {r0['utterances_scored']} utterances of the "
                f"`{result['split']}` split of `{r0['dataset']}`"
                + (f", voice `{opts['voice']}`" if opts.get("voice") else "")
                + (f", split kind `{opts['split']}`" if opts.get("split") else "")
                + (f" ({opts['train_size']} training utterances)" if opts.get("train_size") else "")
                + "."
            ),
            "",
        ]
    trained = [
        f"{os.path.basename(os.path.normpath(w))} at "
        f"`{(p.get('git_commit') or 'unknown')[:7]}`{' (dirty)' if p.get('git_dirty') else ''}, "
        f"{p.get('date', '?')}, load {p.get('load_avg_1m', '?')}"
        for w, p in {r["workdir"]: r.get("run_provenance") for r in rows}.items()  # once a run
        if p
    ]
    if trained:
        lines += [
            "Trained (commit, finish time and 1-minute load average of each run; a load above "
            f"the {rows[0]['run_provenance'].get('cores', '?')} cores means it shared the "
            "machine, which inflates its train s): " + "; ".join(trained) + ".",
            "",
        ]
    if judge:
        heard = judge.get("train_voices")
        lines += [
            (
                f"Recogniser: `{judge['workdir']}` ({judge['kind']} {judge['model']}, "
                f"`{judge['dataset']}` {judge.get('data_options') or {}}"
                + (f", {heard} training voice variants, not the TTS voice" if heard else "")
                + (
                    f"; its own test CER {judge['test_cer']:.4f}"
                    if judge.get("test_cer") is not None
                    else ""
                )
                + "). CER synth: its CER on the synthesised (free-running) audio; TF: on "
                "the teacher-forced post-net mels through Griffin-Lim (the decoder fed the true "
                "previous frames: synth above TF is drift in free running); GL(ref): on the "
                "reference log-mel through the same Griffin-Lim; eSpeak: on the reference audio. "
                "Target: synth <= 2x eSpeak."
            ),
            "",
        ]
    else:
        lines += ["No --asr_workdir: intelligibility not scored.", ""]
    dropout_column = result.get("prenet_dropout") is not None  # --prenet_dropout was given
    head = [
        "run",
        "decoder",
        "params",
        "steps",
        *(["prenet dropout"] if dropout_column else []),
        "train s",
        "TF mel L1",
        "TF stop acc",
        "MCD-DTW dB",
        "frames syn/ref",
        "stopped",
    ]
    if judge:
        head += ["CER synth", "CER TF", "CER GL(ref)", "CER eSpeak", "synth/eSpeak", "<= 2x"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            os.path.basename(os.path.normpath(r["workdir"])),
            r["decoder_cell"],
            _fmt(r["num_params"]),
            _fmt(r.get("step", r["steps"])),  # the checkpoint scored
            *([_fmt(r["prenet_dropout"])] if dropout_column else []),
            _fmt(r["train_time_s"], ".0f"),
            _fmt(r["tf_mel_l1"]),
            _fmt(r["tf_stop_accuracy"]),
            _fmt(r["mcd_dtw_db"], ".2f"),
            _fmt(r["frames_ratio"], ".2f"),
            f"{r['stopped']}/{r['utterances_scored']}",
        ]
        if judge:
            cells += [
                _fmt(r["cer_synth"]),
                _fmt(r.get("cer_tf")),  # absent from JSON written before it was measured
                _fmt(r["cer_vocoded"]),
                _fmt(r["cer_reference"]),
                _fmt(r["cer_ratio"], ".2f"),
                _fmt(r["within_2x"]),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        (
            f"TF: teacher forced (the objective's evaluation). MCD: cepstra "
            f"c1-c{N_MCEP - 1} (fewer for runs with fewer mel channels) of the "
            "log-amplitude mel spectrum, DTW-aligned to the eSpeak reference. Train s: "
            "the run's final.json train_time_s on its machine (for an earlier checkpoint, the "
            "time_s of that step's train record). Stopped: utterances whose stop token ended "
            "them (the rest ran to max_seconds)."
            + (
                " Prenet dropout: whether the prenet's dropout stayed on in free running "
                "(Tacotron 2 keeps it on; teacher-forced scores never use it)."
                if dropout_column
                else ""
            )
        ),
        "",
    ]
    pictures = [
        f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in result.get("pictures", [])
    ]
    if pictures:
        lines += [
            "Each picture: the eSpeak reference log-mel, the synthesised log-mel and the "
            "attention alignment, side by side.",
            "",
            *pictures,
            "",
        ]
    return "\n".join(lines)


def judge_record(asr, tts_configs: list) -> dict:
    """What the intelligibility judge is, and proof that it never heard the TTS voice: for TTS
    runs on one eSpeak voice (data option `voice`, "accent+variant"), the recogniser's training
    split is loaded and must not hold that variant (ValueError naming both otherwise)."""
    from rnnbench import input_pipeline

    config = asr.config
    rec = {
        "workdir": asr.workdir,
        "step": asr.step,
        "kind": config.model.get("kind"),
        "model": (
            f"{'bi' if config.model.get('bidirectional') else ''}{config.model.get('cell')} "
            f"{config.model.get('hidden')}x{config.model.get('layers')}"
        ),
        "dataset": config.get("dataset"),
        "data_options": dict(config.data.get("options") or {}),
        "data_seed": config.data.get("seed"),
    }
    final = os.path.join(asr.workdir, "final.json")
    if os.path.exists(final):
        with open(final) as f:
            rec["test_cer"] = json.load(f).get("test_cer")
    voices = sorted({(c.data.get("options") or {}).get("voice") for c in tts_configs} - {None})
    if voices:
        heard = set(input_pipeline.load_dataset(config).splits["train"].speakers)
        rec["train_voices"] = len(heard)
        for v in voices:
            variant = v.split("+")[-1]
            if variant in heard:
                raise ValueError(
                    f"--asr_workdir={asr.workdir}: the recogniser was trained on voice variant "
                    f"{variant!r}, which the TTS runs speak ({v!r}); intelligibility needs a "
                    "recogniser that never heard it"
                )
    return rec


def write(
    result: dict,
    out: str,
    *,
    commands: list[str] | None = None,
    reproduce_command: str | None = None,
) -> dict:
    """OUT.json and OUT.md from a bench result, atomically (with the reproduce command and the
    commands it runs, when given)."""
    from rnnbench import atomic

    result = dict(result, out=out)
    if reproduce_command:
        result.update(reproduce_command=reproduce_command, commands=list(commands or []))
    atomic.write_json(f"{out}.json", result, indent=1)
    atomic.write_text(f"{out}.md", markdown(result))
    return dict(result, files={"json": f"{out}.json", "md": f"{out}.md"})


def render(
    json_path: str, *, commands: list[str] | None = None, reproduce_command: str | None = None
) -> dict:
    """OUT.md (and .json) again from OUT.json alone; every number as the JSON holds it."""
    from rnnbench import report as report_lib

    result = report_lib.read_table_json(
        json_path, kind="tts_bench", program="experiments.tts_bench", what="a TTS table"
    )
    return write(
        result,
        json_path[: -len(".json")],
        commands=commands if reproduce_command else result.get("commands"),
        reproduce_command=reproduce_command or result.get("reproduce_command"),
    )


def bench(
    workdirs: list[str],
    *,
    out: str,
    asr_workdir: str | None = None,
    split: str = "test",
    num: int = 50,
    batch_size: int = 16,
    plots: int = 3,
    seed: int = 0,
    datasets: dict | None = None,
    command: str = "",
    steps: list[int] | None = None,
    prenet_dropout: list[bool] | None = None,
) -> dict:
    """Scores every run (at each of `steps`, default its newest checkpoint; with each
    `prenet_dropout` setting, default the run's own), writes OUT.json, OUT.md and the
    pictures; returns the JSON object. `datasets`: {workdir: Dataset} to score on in-memory
    datasets (tests)."""
    from rnnbench import inference, provenance

    if not workdirs:
        raise ValueError("no TTS runs to score: pass --workdir or a --sweep_dir with finished runs")
    asr = inference.load_run(asr_workdir) if asr_workdir else None
    judge = judge_record(asr, [inference.read_config(w) for w in workdirs]) if asr else None
    cache: dict = {}
    rows, pictures = [], []
    grid = [(w, s, d) for w in workdirs for s in steps or [None] for d in prenet_dropout or [None]]
    for w, step, dropout in grid:
        r = score_run(
            w,
            asr=asr,
            split_name=split,
            num=num,
            batch_size=batch_size,
            seed=seed,
            dataset=(datasets or {}).get(w),
            reference_cache=cache,
            step=step,
            prenet_dropout=dropout,
        )
        tag = os.path.basename(os.path.normpath(w)) + (f"_step{step}" if steps else "")
        tag += "" if dropout is None else f"_dropout{'on' if dropout else 'off'}"
        for i, ex in enumerate(r.pop("examples")[:plots]):
            pictures.append(f"{out}_{tag}_{i}.png")
            plot_example(ex, pictures[-1], f"{tag}: {ex['text']!r}")
        rows.append(r)
    record = provenance.record({"asr_workdir": asr_workdir, "asr_step": asr.step if asr else None})
    result = {
        "kind": "tts_bench",
        "command": command or "python -m experiments.tts_bench " + " ".join(sys.argv[1:]),
        "provenance": record,
        "split": split,
        "num_utterances": num,
        "prenet_dropout": prenet_dropout,
        "judge": judge,
        "pictures": pictures,
        "runs": rows,
    }
    return write(result, out)


def _step(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--steps: {text!r} is not a checkpoint step (an integer)") from None


def _on_off(text: str) -> bool:
    if text.strip().lower() not in ("on", "off"):
        raise ValueError(f"--prenet_dropout: {text!r} is neither 'on' nor 'off'")
    return text.strip().lower() == "on"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    f = flags.FLAGS
    if f.render_only:
        try:
            rep = render(f.out + ".json")
        except ValueError as e:
            sys.exit(f"error: {e}")
        print(f"re-rendered {rep['files']['md']} from {rep['files']['json']}")
        return
    if bool(f.workdir) == bool(f.sweep_dir):
        raise app.UsageError("give exactly one of --workdir and --sweep_dir")
    try:
        from rnnbench import grid

        result = bench(
            f.workdir or grid.finished_runs(f.sweep_dir),
            out=f.out,
            asr_workdir=f.asr_workdir,
            split=f.split,
            num=f.num_utterances,
            batch_size=f.batch_size,
            plots=f.plots,
            seed=f.seed,
            steps=[_step(s) for s in f.steps] if f.steps else None,
            prenet_dropout=[_on_off(s) for s in f.prenet_dropout] if f.prenet_dropout else None,
        )
    except ValueError as e:
        sys.exit(f"error: {e}")
    for r in result["runs"]:
        extra = (
            f", CER synth {r['cer_synth']:.3f} vs eSpeak {r['cer_reference']:.3f}"
            if "cer_synth" in r
            else ""
        )
        print(
            f"{r['workdir']} (step {r['step']}, prenet dropout "
            f"{'on' if r['prenet_dropout'] else 'off'}): TF mel L1 {r['tf_mel_l1']:.3f}, stop acc "
            f"{r['tf_stop_accuracy']:.3f}, MCD-DTW {r['mcd_dtw_db']:.2f} dB{extra}"
        )
    print(f"wrote {result['files']['json']}, {result['files']['md']}")


if __name__ == "__main__":
    from rnnbench import errors

    define_flags()
    errors.run(main)
