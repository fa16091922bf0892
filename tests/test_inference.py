"""Inference on a trained run: restore, transcribe the user's files, score a manifest."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from toy import SR

from rnnbench import inference
from rnnbench.data import manifest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_restored_run_scores_like_the_final_evaluation(ctc_run):
    workdir, ds, final = ctc_run
    with open(os.path.join(workdir, "classes.json")) as f:  # written by train: no dataset needed
        assert json.load(f) == {"task": ds.task, "classes": list(ds.classes)}
    run = inference.load_run(workdir)
    assert run.step == 30 and run.classes == list(ds.classes)
    metrics, records = inference.score(run, ds, "test")
    assert metrics["cer"] == pytest.approx(final["test_cer"])
    assert metrics["wer"] == pytest.approx(final["test_wer"])
    assert len(records) == len(ds.splits["test"])
    assert [r["reference"] for r in records] == ds.splits["test"].transcripts
    assert inference.predict(run, ds.splits["test"].audio[:5]) == [
        r["hypothesis"] for r in records[:5]
    ]


def _cli(module, *args):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )


@pytest.mark.slow
def test_transcribe_reports_bad_files_and_transcribes_the_rest(ctc_run, tmp_path):
    workdir, ds, _ = ctc_run
    clips = ds.splits["test"].audio[:3]
    paths = []
    for i, clip in enumerate(clips):
        p = tmp_path / f"clip{i}.flac"
        # stereo at 8 kHz: mixed to mono and resampled on the way in
        x = np.repeat(clip[::2, None], 2, axis=1)
        sf.write(p, x, SR // 2)
        paths.append(str(p))
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....not audio")
    r = _cli("experiments.transcribe", f"--workdir={workdir}", paths[0], str(bad), *paths[1:])
    assert r.returncode == 1
    assert f"error: {bad}" in r.stderr
    lines = r.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == paths
    run = inference.load_run(workdir)
    from rnnbench.data import audio

    expected = inference.predict(run, [audio.read_wav(p) for p in paths])
    assert [line.split("\t")[1] if "\t" in line else "" for line in lines] == expected


@pytest.mark.slow
def test_evaluate_on_a_manifest_writes_every_hypothesis(ctc_run, tmp_path):
    workdir, ds, _ = ctc_run
    (tmp_path / "wavs").mkdir()
    rows = ["path\ttranscript"]
    for i, (clip, text) in enumerate(
        zip(ds.splits["test"].audio[:6], ds.splits["test"].transcripts[:6])
    ):
        sf.write(tmp_path / "wavs" / f"{i}.wav", clip, SR)
        rows.append(f"wavs/{i}.wav\t{text.upper()}")
    (tmp_path / "list.tsv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "eval.json"
    r = _cli(
        "experiments.evaluate",
        f"--workdir={workdir}",
        f"--dataset=manifest:{tmp_path / 'list.tsv'}",
        f"--out={out}",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    saved = json.loads(out.read_text())
    assert [u["reference"] for u in saved["utterances"]] == ds.splits["test"].transcripts[:6]
    run = inference.load_run(workdir)
    m, _ = inference.score(run, manifest.load_manifest(path=str(tmp_path / "list.tsv")))
    assert saved["metrics"]["cer"] == pytest.approx(m["cer"])
    assert f"cer={m['cer']:.4f}" in r.stdout
    r = _cli(  # attention alignments exist for attention models only: one clear line
        "experiments.evaluate",
        f"--workdir={workdir}",
        f"--dataset=manifest:{tmp_path / 'list.tsv'}",
        f"--out={tmp_path / 'again.json'}",
        "--alignments=1",
    )
    assert r.returncode != 0 and "alignments exist for model.kind 'las' only" in r.stderr
    assert not (tmp_path / "again.json").exists()
    r = _cli(  # --decode: prefix beam search instead of the run's greedy decoding
        "experiments.evaluate",
        f"--workdir={workdir}",
        f"--dataset=manifest:{tmp_path / 'list.tsv'}",
        f"--out={tmp_path / 'beam.json'}",
        "--decode=beam=3,token_prune=2",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    saved = json.loads((tmp_path / "beam.json").read_text())
    assert saved["decode"]["beam"] == 3 and saved["decode"]["token_prune"] == 2
    run = inference.load_run(workdir, decode={"beam": 3, "token_prune": 2})
    m, _ = inference.score(run, manifest.load_manifest(path=str(tmp_path / "list.tsv")))
    assert saved["metrics"]["cer"] == pytest.approx(m["cer"])
    r = _cli(
        "experiments.evaluate",
        f"--workdir={workdir}",
        f"--dataset=manifest:{tmp_path / 'list.tsv'}",
        "--decode=beam",
    )
    assert r.returncode != 0 and "--decode item 'beam': expected key=value" in r.stderr


@pytest.mark.parametrize(
    "content,match",
    [
        ("a.wav\n", r"line 1: expected 'audio path<TAB>transcript'"),
        ("a.wav\thello wörld\n", r"line 1: transcript 'hello wörld' .* outside a-z"),
        ("# only a comment\n", "lists no utterances"),
        ("missing.wav\thello\n", r"manifest .*list.tsv: cannot read audio file .*missing.wav"),
    ],
)
def test_bad_manifests_name_the_file_and_line(tmp_path, content, match):
    (tmp_path / "list.tsv").write_text(content)
    with pytest.raises(ValueError, match=match):
        manifest.load_manifest(path=str(tmp_path / "list.tsv"))


def test_load_run_needs_a_run_directory(tmp_path):
    with pytest.raises(ValueError, match="has no config.json: not a training run"):
        inference.load_run(str(tmp_path))
