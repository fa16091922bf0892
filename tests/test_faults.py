"""Fault injection: every bad input or fault ends in ONE line that names the culprit.

Each case asserts (1) the message names the culprit (flag, file, value, step), (2) the exit
status (2 for an expected error, through rnnbench.errors' boundary), and (3) that nothing
half-written or blocking is left: no workdir claimed for a run that never trained, no orbax tmp
directory, no process left running, no lock held. The fast cases run in-process or in small
subprocesses (the tiny tone dataset of tests/toy.py); whole training runs are marked slow.

`python -m experiments.reliability` runs them all and writes results/reliability.md from the
`message` / `result` each case records.
"""

import fcntl
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
from toy import small_config, tone_dataset

from experiments.configs import ctc
from rnnbench import data as data_lib
from rnnbench import errors, run_log, train
from rnnbench.data import audio, fsdd

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOY_RUN = os.path.join(HERE, "toy_run.py")
TIMEOUT = 600  # no case may block: every subprocess runs under this limit


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def expect_error(capsys, record_property):
    """fn() inside the boundary must exit with status 2 and print one `error:` line (no
    traceback) that contains every culprit; returns that line and records it for the report."""

    def check(fn, *culprits, status=errors.EXIT_ERROR):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc, errors.boundary(verbose=False):
            fn()
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert exc.value.code == status, err
        assert len(lines) == 1 and "Traceback" not in err, err
        assert err.rstrip().splitlines()[-1] == lines[0], err  # the last thing printed
        for c in culprits:
            assert str(c) in lines[0], (c, lines[0])
        record_property("message", lines[0])
        record_property("status", exc.value.code)
        return lines[0]

    return check


def check_failed_process(
    r: subprocess.CompletedProcess, record_property, *culprits, status=errors.EXIT_ERROR
) -> str:
    """A finished subprocess: status 2, stderr ends in one `error:` line naming the culprits."""
    lines = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode == status, r.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.rstrip().splitlines()[-1] == lines[0], r.stderr[-3000:]
    for c in culprits:
        assert str(c) in lines[0], (c, lines[0])
    record_property("message", lines[0])
    record_property("status", r.returncode)
    return lines[0]


def run(args, timeout=TIMEOUT, env=None, prefix=(), **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}))
    return subprocess.run(
        [*prefix, sys.executable, *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def toy(workdir, steps=4, every=2, *extra, **kw) -> subprocess.CompletedProcess:
    """tests/toy_run.py `run`: a tiny tone-dataset run inside the error boundary."""
    return run([TOY_RUN, "run", str(workdir), str(steps), str(every), *extra], **kw)


def unprivileged() -> list[str]:
    """A command prefix under which file permissions hold: root normally ignores them, so
    as root drop the capabilities that bypass them (setpriv, util-linux)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: file permissions cannot be enforced")
    drop = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"]


def tmp_checkpoints(workdir) -> list[str]:
    d = os.path.join(workdir, "checkpoints")
    return [n for n in os.listdir(d) if "tmp" in n] if os.path.isdir(d) else []


def lock_is_free(workdir) -> bool:
    path = os.path.join(workdir, run_log.LOCK_FILE)
    if not os.path.exists(path):
        return True
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def set_path(config, path: str, value) -> None:
    """config.<path> = value, of any type (as a config file may write it)."""
    *parents, leaf = path.split(".")
    node = config
    for p in parents:
        node = node[p]
    with node.ignore_type():
        node[leaf] = value


def fit(config, workdir, dataset=None):
    return train.train_and_evaluate(
        config,
        str(workdir),
        wandb_mode="disabled",
        progress=False,
        dataset=dataset if dataset is not None else tone_dataset(),
    )


# ----------------------------------------------------------------------------- config values

CONFIG_CASES = [  # (field, bad value, words the message must contain)
    ("optimizer.learning_rate", float("nan"), ["config.optimizer.learning_rate", "nan"]),
    ("optimizer.learning_rate", float("inf"), ["config.optimizer.learning_rate", "inf"]),
    ("optimizer.learning_rate", -1e-3, ["config.optimizer.learning_rate", "-0.001"]),
    ("optimizer.learning_rate", 0.0, ["config.optimizer.learning_rate", "0.0"]),
    ("optimizer.learning_rate", "fast", ["config.optimizer.learning_rate", "'fast'"]),
    ("num_steps", 0, ["config.num_steps", "0"]),
    ("num_steps", 2.5, ["config.num_steps", "2.5"]),
    ("batch_size", -8, ["config.batch_size", "-8"]),
    ("eval_every", 0, ["config.eval_every", "0"]),
    ("checkpoint_every", 0, ["config.checkpoint_every", "0"]),
    ("log_every", 0, ["config.log_every", "0"]),
    ("keep_checkpoints", 0, ["config.keep_checkpoints", "0"]),
    ("seed", -1, ["config.seed", "-1"]),
    ("features.hop_ms", 0.0, ["config.features.hop_ms", "0.0"]),
    ("features.win_ms", -25.0, ["config.features.win_ms", "-25.0"]),
    ("features.hop_ms", 40.0, ["config.features.hop_ms=40.0", "win_ms=25.0"]),
    ("features.hop_ms", 0.01, ["config.features.hop_ms=0.01", "shorter than one sample"]),
    ("features.n_mels", 0, ["config.features.n_mels", "0"]),
    ("features.kind", "spectrogram", ["config.features.kind", "'spectrogram'"]),
    ("features.normalize", "batch", ["config.features.normalize", "'batch'"]),
    ("features.n_fft", 128, ["config.features.n_fft", "128", "400 samples"]),
    ("model.hidden", 0, ["config.model.hidden", "0"]),
    ("model.layers", 1.5, ["config.model.layers", "1.5"]),
    ("model.dropout", 1.5, ["config.model.dropout", "1.5"]),
    ("model.zoneout", -0.1, ["config.model.zoneout", "-0.1"]),
    ("model.recurrent_dropout", 1.0, ["config.model.recurrent_dropout", "1.0"]),
    ("model.frontend.stride", 0, ["config.model.frontend.stride", "0"]),
    ("model.frontend.kernel", -3, ["config.model.frontend.kernel", "-3"]),
    ("model.attention_heads", 3, ["config.model.attention_heads=3", "16"]),
    ("model.unroll", -1, ["config.model.unroll", "-1"]),
    ("model.cell", "lsmt", ["config.model.cell", "'lsmt'"]),
    ("optimizer.clip_norm", -1.0, ["config.optimizer.clip_norm", "-1.0"]),
    ("optimizer.weight_decay", float("nan"), ["config.optimizer.weight_decay", "nan"]),
    ("optimizer.warmup_steps", -5, ["config.optimizer.warmup_steps", "-5"]),
    ("optimizer.name", "adagrad", ["config.optimizer.name", "'adagrad'"]),
    ("buckets", (16000, -1), ["config.buckets", "-1"]),
    ("precision", "fp8", ["config.precision", "'fp8'"]),
    ("spec_augment.time_mask_width", -1, ["config.spec_augment.time_mask_width", "-1"]),
    ("spec_augment.mel_warp", 1.5, ["config.spec_augment.mel_warp", "[0, 1)", "1.5"]),
    ("dataset", "timit", ["config.dataset", "'timit'"]),
]


@pytest.mark.parametrize(
    "field,value,words", CONFIG_CASES, ids=[f"{f}={v!r}" for f, v, _ in CONFIG_CASES]
)
def test_config_value_is_refused_before_any_work(tmp_path, expect_error, field, value, words):
    """The whole run is refused by check_config, before data, compile or the workdir."""
    config = small_config()
    set_path(config, field, value)
    expect_error(lambda: fit(config, tmp_path / "w"), *words)
    assert not (tmp_path / "w").exists()


def test_config_mfcc_more_coefficients_than_mels(tmp_path, expect_error):
    config = small_config()
    config.features.kind, config.features.n_mfcc = "mfcc", 80
    expect_error(lambda: fit(config, tmp_path / "w"), "config.features.n_mfcc", "80", "n_mels=16")
    assert not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------- data


def _with_clip(split: str, index: int, samples: int, task="classify"):
    ds = tone_dataset(task)
    ds.splits[split].audio[index] = np.zeros(samples, np.int16)
    return ds


@pytest.mark.parametrize("split", ["validation", "test"])
def test_data_clip_longer_than_the_largest_bucket(tmp_path, expect_error, split):
    """Found before compiling (it used to crash at the first evaluation, after training)."""
    config = small_config()
    config.buckets = (4800,)
    ds = _with_clip(split, 5, 8000)
    expect_error(
        lambda: fit(config, tmp_path / "w", ds),
        f"{split} example 5",
        "8000 samples",
        "--config.buckets=(4800,)",
        "speaker 's'",
    )
    assert not (tmp_path / "w").exists()


def test_data_clip_shorter_than_one_window(tmp_path, expect_error):
    ds = _with_clip("train", 3, 200)
    expect_error(
        lambda: fit(small_config(), tmp_path / "w", ds),
        "train example 3",
        "200 samples",
        "--config.features.win_ms=25.0",
    )
    assert not (tmp_path / "w").exists()


def test_data_empty_test_split(tmp_path, expect_error):
    ds = tone_dataset()
    ds.splits["test"] = data_lib.Split([], np.zeros(0, np.int32), None, [])
    expect_error(
        lambda: fit(small_config(), tmp_path / "w", ds), "tones_classify", "no test examples"
    )
    assert not (tmp_path / "w").exists()


def test_data_batch_larger_than_the_training_split(tmp_path, expect_error):
    config = small_config()
    config.batch_size = 64
    expect_error(lambda: fit(config, tmp_path / "w"), "config.batch_size=64", "[1, 24]")
    assert not (tmp_path / "w").exists()


def _ctc_config():
    c = ctc.get_config("lstm")
    c.model.hidden, c.batch_size, c.features.n_mels, c.buckets = 16, 8, 16, ()
    c.num_steps, c.eval_every, c.checkpoint_every = 4, 2, 2
    c.optimizer.warmup_steps, c.optimizer.schedule = 0, "constant"
    return c


def test_data_ctc_transcript_longer_than_its_frames(tmp_path, expect_error):
    ds = tone_dataset("ctc")
    ds.splits["validation"].transcripts[3] = "ab" * 16
    expect_error(
        lambda: fit(_ctc_config(), tmp_path / "w", ds), "validation example 3", "frames for CTC"
    )
    assert not (tmp_path / "w").exists()


def test_data_ctc_character_outside_the_alphabet(tmp_path, expect_error):
    ds = tone_dataset("ctc")
    ds.splits["train"].transcripts[0] = "a1"
    expect_error(lambda: fit(_ctc_config(), tmp_path / "w", ds), "'1'", "'a1'")
    assert not (tmp_path / "w").exists()


def test_data_model_kind_does_not_fit_the_task(tmp_path, expect_error):
    expect_error(
        lambda: fit(small_config(), tmp_path / "w", tone_dataset("ctc")),
        "ctc task",
        "config.model.kind='classifier'",
    )
    assert not (tmp_path / "w").exists()


def test_data_option_the_loader_does_not_take(tmp_path, expect_error):
    """kws.py's corpus sizes passed on to the FSDD loader (--config.dataset=fsdd)."""
    config = small_config()
    config.dataset, config.data_dir = "fsdd", str(tmp_path)
    expect_error(
        lambda: train.train_and_evaluate(
            config, str(tmp_path / "w"), wandb_mode="disabled", progress=False
        ),
        "dataset 'fsdd' takes no option",
        "config.data.options",
    )
    assert not (tmp_path / "w").exists()


def test_data_missing_data_dir(tmp_path, expect_error):
    config = small_config()
    config.dataset, config.data_dir = "fsdd", str(tmp_path / "nowhere")
    config.data.options = {}
    expect_error(
        lambda: train.train_and_evaluate(
            config, str(tmp_path / "w"), wandb_mode="disabled", progress=False
        ),
        "fsdd",
        str(tmp_path / "nowhere"),
        "recordings",
    )
    assert not (tmp_path / "w").exists()


def test_data_speech_commands_without_testing_list(tmp_path, expect_error):
    (tmp_path / "sc" / "yes").mkdir(parents=True)
    (tmp_path / "sc" / "validation_list.txt").write_text("")
    config = small_config()
    config.dataset, config.data_dir = "speech_commands", str(tmp_path / "sc")
    config.data.options = {}
    expect_error(
        lambda: train.train_and_evaluate(
            config, str(tmp_path / "w"), wandb_mode="disabled", progress=False
        ),
        "testing_list.txt",
    )
    assert not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------- audio files


def _float_wav(path, x, rate=8000):
    sf.write(str(path), np.asarray(x, np.float32), rate, subtype="FLOAT")
    return str(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_audio_non_finite_float_wav_is_an_error_naming_it(tmp_path, expect_error, bad):
    x = 0.1 * np.sin(np.arange(4000) / 5.0)
    x[1234] = bad
    path = _float_wav(tmp_path / "clip.wav", x)
    expect_error(lambda: audio.read_wav(path), path, "1 non-finite sample", "sample 1234")


def test_audio_non_finite_in_one_stereo_channel(tmp_path, expect_error):
    x = np.stack([0.1 * np.ones(800), 0.1 * np.ones(800)], axis=1)
    x[10:20, 1] = np.nan
    path = str(tmp_path / "stereo.wav")
    sf.write(path, x.astype(np.float32), 16000, subtype="FLOAT")
    expect_error(lambda: audio.read_wav(path), path, "10 non-finite")


def _fake_fsdd(root, bad=None, digits=3, speakers=("ann", "bob"), takes=12):
    """A tiny FSDD layout of 8 kHz float WAVs; `bad` = (digit, speaker, take) holds a NaN."""
    rec = root / "recordings"
    rec.mkdir(parents=True)
    t = np.arange(2000) / 8000
    for d in range(digits):
        for sp in speakers:
            for k in range(takes):
                x = 0.3 * np.sin(2 * np.pi * (300 + 200 * d) * t)
                if bad == (d, sp, k):
                    x[100] = np.nan
                _float_wav(rec / f"{d}_{sp}_{k}.wav", x)
    return root


def test_audio_nan_wav_in_the_fsdd_test_takes_stops_the_load(tmp_path, expect_error):
    """It used to become a silent zero clip (and +inf full scale), changing the test set."""
    root = _fake_fsdd(tmp_path / "fsdd", bad=(1, "bob", 2))
    expect_error(lambda: fsdd.load_fsdd(data_dir=str(root)), "1_bob_2.wav", "non-finite")


def test_audio_skip_option_counts_the_file(tmp_path, record_property):
    """on_error='skip' (documented in rnnbench/data/audio.py) leaves it out, warns, and lists
    it in skipped_files (copied into final.json)."""
    root = _fake_fsdd(tmp_path / "fsdd", bad=(1, "bob", 2))
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable or unusable .*1_bob_2.wav"):
        ds = fsdd.load_fsdd(data_dir=str(root), on_error="skip")
    assert ds.skipped_files == [str(root / "recordings" / "1_bob_2.wav")]
    assert len(ds.splits["test"]) == 3 * 2 * 5 - 1 and len(ds.splits["train"]) == 3 * 2 * 2
    record_property("result", f"skipped_files={[os.path.basename(p) for p in ds.skipped_files]}")


def test_audio_unknown_on_error_value(tmp_path, expect_error):
    root = _fake_fsdd(tmp_path / "fsdd")
    expect_error(
        lambda: fsdd.load_fsdd(data_dir=str(root), on_error="ignore"), "'ignore'", "on_error"
    )


# ----------------------------------------------------------------------------- workdirs


def test_workdir_is_a_regular_file(tmp_path, expect_error):
    (tmp_path / "w").write_text("notes")
    expect_error(
        lambda: fit(small_config(), tmp_path / "w"), f"--workdir {tmp_path / 'w'}", "is a file"
    )
    assert (tmp_path / "w").read_text() == "notes"


def test_workdir_under_a_regular_file(tmp_path, expect_error):
    (tmp_path / "f").write_text("notes")
    expect_error(
        lambda: fit(small_config(), tmp_path / "f" / "run"),
        str(tmp_path / "f"),
        "is a file, not a directory",
    )


def test_workdir_twice_in_one_program(tmp_path, expect_error):
    a, b = small_config(), small_config()
    b.seed = 1
    w = str(tmp_path / "w")
    expect_error(
        lambda: train.train_and_evaluate_many(
            [a, b], [w, w], wandb_mode="disabled", progress=False, dataset=tone_dataset()
        ),
        "workdirs must be distinct",
        w,
    )
    assert not (tmp_path / "w").exists()


def test_workdir_in_use_by_another_process(tmp_path, expect_error):
    w = tmp_path / "w"
    w.mkdir()
    hold = (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d' % os.getpid()); "
        "print('locked', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(w / run_log.LOCK_FILE)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        expect_error(
            lambda: fit(small_config(), w),
            f"--workdir {w}",
            "in use by another run",
            f"pid {holder.pid}",
        )
        assert not (w / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert lock_is_free(w)


def test_workdir_with_truncated_config_json(tmp_path, expect_error):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "config.json").write_text('{"batch_size": 8, "data')
    expect_error(
        lambda: fit(small_config(), tmp_path / "w"),
        str(tmp_path / "w" / "config.json"),
        "unreadable",
    )


def test_workdir_with_truncated_final_json(tmp_path, expect_error):
    config = small_config()
    run_log.check_or_write_config(str(tmp_path / "w"), config)
    (tmp_path / "w" / "final.json").write_text('{"steps": 4, "test_acc')
    expect_error(
        lambda: fit(config, tmp_path / "w"),
        str(tmp_path / "w" / "final.json"),
        "unreadable",
        "move it aside",
    )


def test_workdir_of_a_different_config(tmp_path, expect_error):
    config = small_config()
    run_log.check_or_write_config(str(tmp_path / "w"), config)
    config.optimizer.learning_rate = 1e-2
    expect_error(
        lambda: fit(config, tmp_path / "w"),
        str(tmp_path / "w"),
        "differs in optimizer.learning_rate",
    )


def test_workdir_claim_is_undone_if_the_start_fails_before_a_checkpoint(tmp_path, record_property):
    """A failed first start leaves no config.json to refuse the corrected command with; once
    a checkpoint exists the workdir keeps its config."""
    w, config = str(tmp_path / "w"), small_config()
    with pytest.raises(RuntimeError, match="crash"), run_log.claim(w, config):
        assert os.path.exists(os.path.join(w, "config.json")) and not lock_is_free(w)
        raise RuntimeError("crash before training")
    assert not os.path.exists(os.path.join(w, "config.json")) and lock_is_free(w)
    config.optimizer.learning_rate = 1e-2  # the corrected command is accepted
    run_log.check_config_matches(w, config)
    with pytest.raises(RuntimeError, match="crash"), run_log.claim(w, config):
        os.makedirs(os.path.join(w, "checkpoints", "2"))
        raise RuntimeError("crash after a checkpoint")
    with open(os.path.join(w, "config.json")) as f:
        assert json.load(f)["optimizer"]["learning_rate"] == 1e-2
    record_property(
        "result", "config.json removed after the failed first start, kept after a checkpoint"
    )


def test_workdir_read_only_is_refused_before_loading_data(tmp_path, record_property):
    prefix = unprivileged()
    w = tmp_path / "w"
    w.mkdir()
    w.chmod(0o555)
    try:
        r = toy(w, prefix=prefix, timeout=300)
    finally:
        w.chmod(0o755)
    check_failed_process(r, record_property, f"--workdir {w}", "not writable")
    assert os.listdir(w) == []


def test_workdir_read_only_checkpoints_dir(tmp_path, record_property):
    """A read-only checkpoints/ (read-only mount) used to hang the process at the first save."""
    prefix = unprivileged()
    ckpt = tmp_path / "w" / "checkpoints"
    ckpt.mkdir(parents=True)
    ckpt.chmod(0o555)
    try:
        t0 = time.time()
        r = toy(tmp_path / "w", prefix=prefix, timeout=300)
    finally:
        ckpt.chmod(0o755)
    check_failed_process(r, record_property, str(ckpt), "not writable")
    assert time.time() - t0 < 300 and os.listdir(ckpt) == []
    assert not (tmp_path / "w" / "config.json").exists()


# ----------------------------------------------------------------------------- checkpoints

STATE = {"w": jnp.arange(20000, dtype=jnp.float32), "step": jnp.int32(0)}


def _saved(workdir, steps=(2, 4)):
    """A workdir with checkpoints of STATE + step at each step."""
    mngr = train._checkpoint_manager(str(workdir), small_config())
    for s in steps:
        train.save_checkpoint(mngr, str(workdir), s, jax.tree.map(lambda x, s=s: x + s, STATE))
    mngr.close()
    return os.path.join(str(workdir), "checkpoints")


def _truncate_data(step_dir):
    d = os.path.join(step_dir, "default", "ocdbt.process_0", "d")
    for f in os.listdir(d):
        with open(os.path.join(d, f), "r+b") as fh:
            fh.truncate(10)


def _overwrite_data(step_dir):
    d = os.path.join(step_dir, "default", "ocdbt.process_0", "d")
    for f in os.listdir(d):
        p = os.path.join(d, f)
        with open(p, "r+b") as fh:
            fh.write(np.random.default_rng(0).bytes(os.path.getsize(p)))


def _empty_metadata(step_dir):
    open(os.path.join(step_dir, "default", "_METADATA"), "w").close()


def _delete_item(step_dir):
    shutil.rmtree(os.path.join(step_dir, "default"))


CORRUPTIONS = {
    "data truncated": _truncate_data,
    "data overwritten": _overwrite_data,
    "_METADATA emptied": _empty_metadata,
    "item directory deleted": _delete_item,
}


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_checkpoint_corrupt_newest_resumes_from_the_previous(
    tmp_path, capsys, record_property, how
):
    ckpt = _saved(tmp_path)
    CORRUPTIONS[how](os.path.join(ckpt, "4"))
    step, state, moved = train.restore_newest(str(tmp_path), small_config(), STATE)
    err = capsys.readouterr().err.strip()
    assert step == 2 and float(state["w"][1]) == 3.0  # step 2 holds arange + 2
    assert moved == [os.path.join(ckpt, "4.corrupt")] and sorted(os.listdir(ckpt)) == [
        "2",
        "4.corrupt",
    ]
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("warning: checkpoint step 4") and "4.corrupt" in err
    assert "resuming from step 2" in err
    record_property("message", err)


def test_checkpoint_with_non_finite_values_counts_as_corrupt(tmp_path, capsys, record_property):
    ckpt = _saved(tmp_path, steps=(2,))
    mngr = train._checkpoint_manager(str(tmp_path), small_config())
    train.save_checkpoint(mngr, str(tmp_path), 4, dict(STATE, w=STATE["w"] * jnp.nan))
    mngr.close()
    step, _, moved = train.restore_newest(str(tmp_path), small_config(), STATE)
    err = capsys.readouterr().err.strip()
    assert step == 2 and moved == [os.path.join(ckpt, "4.corrupt")]
    assert "holds non-finite values" in err and "resuming from step 2" in err
    record_property("message", err)


def test_checkpoint_none_restores_moves_nothing(tmp_path, expect_error):
    ckpt = _saved(tmp_path)
    _truncate_data(os.path.join(ckpt, "4"))
    _empty_metadata(os.path.join(ckpt, "2"))
    expect_error(
        lambda: train.restore_newest(str(tmp_path), small_config(), STATE),
        f"no checkpoint in {ckpt} restores",
        "step 4",
    )
    assert sorted(os.listdir(ckpt)) == ["2", "4"]


DISK_FULL = r"""
import os, resource, signal, sys
sys.path.insert(0, {tests!r})
import jax.numpy as jnp
import numpy as np
from rnnbench import errors, train
from toy import small_config
w, c = sys.argv[1], small_config()
mngr = train._checkpoint_manager(w, c)
train.save_checkpoint(mngr, w, 2, {{"w": jnp.ones(1000)}})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the file-size limit: writes fail as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, resource.RLIM_INFINITY))
with errors.boundary():
    noise = np.random.default_rng(0).normal(size=100000)  # incompressible
    train.save_checkpoint(mngr, w, 4, {{"w": jnp.asarray(noise)}})
"""


def test_checkpoint_save_on_a_full_disk_stops_with_one_line(tmp_path, record_property):
    """It used to print ~530 lines of orbax tracebacks and leave 30.orbax-checkpoint-tmp."""
    r = run(["-c", DISK_FULL.format(tests=HERE), str(tmp_path)], timeout=300)
    check_failed_process(
        r,
        record_property,
        "checkpoint step 4",
        str(tmp_path / "checkpoints"),
        "File too large",
        "last good checkpoint (step 2)",
    )
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]  # no tmp dir left


# ----------------------------------------------------------------------------- errors module


def test_errors_unexpected_error_keeps_its_traceback(record_property):
    with pytest.raises(ZeroDivisionError), errors.boundary(verbose=False):
        1 / 0  # noqa: B018 - a bug, not bad input
    with pytest.raises(json.JSONDecodeError), errors.boundary(verbose=False):
        json.loads("{")  # a ValueError raised inside a library: a bug until shown otherwise
    record_property(
        "result",
        "ZeroDivisionError and a ValueError from inside json re-raised "
        "with their tracebacks (exit status 1)",
    )


def test_errors_verbose_shows_the_traceback_too(capsys, record_property):
    with pytest.raises(SystemExit) as exc, errors.boundary(verbose=True):
        train.check_config(_lr(float("nan")))
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" in err and "check_config" in err
    assert err.rstrip().splitlines()[-1].startswith("error: config.optimizer.learning_rate")
    record_property("result", f"traceback ({len(err.splitlines())} lines), then the error line")


def _lr(lr):
    c = small_config()
    c.optimizer.learning_rate = lr
    return c


def test_errors_os_error_names_the_file(tmp_path, expect_error):
    expect_error(
        lambda: (tmp_path / "missing.json").read_text(),
        "No such file or directory",
        str(tmp_path / "missing.json"),
    )


# ----------------------------------------------------------------------------- command line

CLI_CASES = [  # (extra args, words the message must contain)
    (["--config=experiments/configs/nope.py"], ["--config file", "nope.py", "does not exist"]),
    (
        ["--config=experiments/configs/kws.py", "--config.batch_size=abc"],
        ["--config.batch_size=abc", "invalid literal"],
    ),
    (
        ["--config=experiments/configs/kws.py", "--config.optimizer.learning_rate=nan"],
        ["config.optimizer.learning_rate", "nan"],
    ),
    (
        ["--config=experiments/configs/kws.py", "--config.features.hop_ms=0"],
        ["config.features.hop_ms", "0.0"],
    ),
    (["--config=experiments/configs/kws.py", "--seeds=0,x"], ["--seeds", "integers"]),
    (["--config=experiments/configs/kws.py", "--nosuchflag"], ["nosuchflag"]),
]


@pytest.mark.parametrize(
    "args,words", CLI_CASES, ids=[" ".join(a[1:]) or a[0] for a, _ in CLI_CASES]
)
def test_cli_bad_input_is_one_line_with_status_2(tmp_path, record_property, args, words):
    r = run(["-m", "experiments.train", f"--workdir={tmp_path}/w", *args], timeout=300)
    check_failed_process(r, record_property, *words)
    assert not (tmp_path / "w").exists()


def test_cli_config_file_with_a_syntax_error(tmp_path, record_property):
    (tmp_path / "cfg.py").write_text("def get_config(:\n    pass\n")
    r = run(
        ["-m", "experiments.train", f"--config={tmp_path}/cfg.py", f"--workdir={tmp_path}/w"],
        timeout=300,
    )
    check_failed_process(r, record_property, str(tmp_path / "cfg.py"), "line 1", "invalid syntax")


@pytest.mark.slow
def test_cli_workdir_under_a_file_and_verbose(tmp_path, record_property):
    (tmp_path / "f").write_text("")
    args = [
        "-m",
        "experiments.train",
        "--config=experiments/configs/kws.py",
        f"--workdir={tmp_path}/f/run",
    ]
    check_failed_process(
        run(args, timeout=300), record_property, str(tmp_path / "f"), "not a directory"
    )
    r = run([*args, "--verbose"], timeout=300)
    assert r.returncode == 2 and "Traceback" in r.stderr and "check_workdir" in r.stderr
    assert r.stderr.rstrip().splitlines()[-1].startswith("error: --workdir")


# ----------------------------------------------------------------------------- W&B

HANGING_WANDB = r"""
import json, os, socket, sys, threading, time
t0 = time.time()
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(16)
threading.Thread(target=lambda: [srv.accept() for _ in iter(int, 1)], daemon=True).start()
os.environ["WANDB_BASE_URL"] = "http://127.0.0.1:%d" % srv.getsockname()[1]  # never answers
os.environ["WANDB_API_KEY"] = "x" * 40
sys.path.insert(0, {tests!r})
from toy import small_config
from rnnbench import run_log
log = run_log.RunLog(sys.argv[1], small_config(), wandb_mode="online")
log.write(1, "train", loss=1.0)
log.finish({{"steps": 1}})
print(json.dumps({{"mode": log.wandb_mode, "wait_s": log.wandb_wait_s}}), flush=True)
"""


@pytest.mark.slow
def test_wandb_server_that_never_answers_costs_seconds_not_a_minute(tmp_path, record_property):
    """`--wandb=online` with a key and no network used to stall the run ~63 s."""
    t0 = time.time()
    r = run(
        ["-c", HANGING_WANDB.format(tests=HERE), str(tmp_path)],
        timeout=120,
        env={"WANDB_SILENT": "true"},
    )
    total = time.time() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["mode"] == "offline" and out["wait_s"] < 10.0, out
    assert "is not reachable" in r.stderr and (tmp_path / "final.json").exists()
    assert total < 30.0, total  # process start, imports and exit included
    record_property(
        "result",
        f"fell back to W&B offline after {out['wait_s']:.1f} s; process done in {total:.1f} s",
    )


def test_wandb_probe_of_a_closed_port_is_immediate(record_property):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    t0 = time.time()
    why = run_log.server_unreachable(f"http://127.0.0.1:{port}", timeout=3.0)
    assert why is not None and "refused" in why.lower() and time.time() - t0 < 3.0
    record_property("result", f"unreachable ({why}) in {time.time() - t0:.2f} s")


def test_wandb_probe_of_a_silent_server_is_bounded(record_property):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    held = []
    threading.Thread(target=lambda: held.append(srv.accept()), daemon=True).start()
    t0 = time.time()
    why = run_log.server_unreachable(f"http://127.0.0.1:{srv.getsockname()[1]}", timeout=1.0)
    waited = time.time() - t0
    assert why is not None and 0.9 < waited < 3.0
    srv.close()
    record_property("result", f"unreachable ({why}) after {waited:.1f} s (limit 1 s)")


# ----------------------------------------------------------------------------- whole runs (slow)


def _final(r) -> dict:
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


METRICS = ("val_loss", "val_accuracy", "test_loss", "test_accuracy")


def _train_losses(workdir, live: bool = False) -> list:
    """(step, loss) of every train event. `live`: the file may be mid-write (a running or
    killed run), so a last line without its newline is left out; otherwise every line must
    parse."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        lines = f.readlines()
    if live and lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    events = [json.loads(line) for line in lines]
    return [(e["step"], e["loss"]) for e in events if e["split"] == "train"]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted tiny run (24 steps, a checkpoint every 4) to compare resumes with."""
    w = tmp_path_factory.mktemp("reference") / "w"
    return str(w), _final(toy(w, 24, 4))


@pytest.mark.slow
def test_kill_sigkill_at_10_random_steps_resumes_bitwise(tmp_path, reference_run, record_property):
    """One run killed with SIGKILL at 10 random steps, restarted each time: the same final
    metrics and per-step train losses as the uninterrupted run, bitwise (CPU)."""
    ref_dir, ref = reference_run
    rng = random.Random(16)
    targets = sorted(rng.sample(range(2, 21), 10))
    w = str(tmp_path / "w")
    killed_at = []
    metrics = os.path.join(w, "metrics.jsonl")
    for target in targets:
        old = os.stat(metrics).st_ino if os.path.exists(metrics) else None
        proc = subprocess.Popen(
            [sys.executable, TOY_RUN, "run", w, "24", "4"],
            cwd=ROOT,
            env=dict(os.environ, JAX_PLATFORMS="cpu"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.time() + TIMEOUT
            while proc.poll() is None and time.time() < deadline:
                # a resumed run rewrites metrics.jsonl (truncated to its checkpoint) at start
                if os.path.exists(metrics) and os.stat(metrics).st_ino != old:
                    steps = [s for s, _ in _train_losses(w, live=True)]
                    if steps and steps[-1] >= target:
                        break
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        killed_at.append(max([s for s, _ in _train_losses(w, live=True)] or [0]))
        assert not os.path.exists(os.path.join(w, "final.json"))
    final = _final(toy(w, 24, 4))
    assert tmp_checkpoints(w) == [] and lock_is_free(w)
    for k in METRICS:
        assert final[k] == ref[k], (k, final[k], ref[k])
    assert _train_losses(w) == _train_losses(ref_dir)  # every step once, the same losses
    record_property(
        "result",
        f"kill targets {targets}: killed after steps {killed_at} (a "
        "repeated step: killed while restarting); the last start resumed "
        f"from step {final['resumed_from_step']}; val/test loss and "
        "accuracy and all 24 train losses bitwise equal",
    )


@pytest.mark.slow
def test_kill_corrupt_newest_checkpoint_resumes_to_the_same_result(
    tmp_path, reference_run, record_property
):
    """The newest checkpoint of a run is damaged after a crash: the restart reports it, moves
    it aside and resumes from the previous one, to the uninterrupted run's metrics."""
    ref_dir, ref = reference_run
    w = tmp_path / "w"
    shutil.copytree(ref_dir, w)
    os.remove(w / "final.json")  # as if killed after the last checkpoint
    _truncate_data(str(w / "checkpoints" / "24"))
    r = toy(w, 24, 4)
    final = _final(r)
    assert final["resumed_from_step"] == 20
    assert final["corrupt_checkpoints"] == [str(w / "checkpoints" / "24.corrupt")]
    assert "warning: checkpoint step 24" in r.stderr and "Traceback" not in r.stderr
    for k in METRICS:
        assert final[k] == ref[k], (k, final[k], ref[k])
    record_property(
        "message",
        next(line for line in r.stderr.splitlines() if line.startswith("warning: checkpoint")),
    )


LIMITED = (
    "import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (12000, resource.RLIM_INFINITY)); "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.mark.slow
def test_kill_disk_full_during_a_run_stops_promptly(tmp_path, record_property):
    """A full disk at the first checkpoint (files limited to 12 kB, RLIMIT_FSIZE: less than
    orbax's _METADATA of the toy model, ~15 kB, so the first save always fails): one line,
    status 2, no tmp dir, and the corrected command (same workdir) is not refused."""
    t0 = time.time()
    r = run(["-c", LIMITED, TOY_RUN, "run", str(tmp_path / "w"), "4", "2"], timeout=TIMEOUT)
    check_failed_process(r, record_property, "checkpoint step 2", "File too large")
    assert time.time() - t0 < TIMEOUT
    assert tmp_checkpoints(tmp_path / "w") == [] and lock_is_free(tmp_path / "w")
    assert not (tmp_path / "w" / "config.json").exists()
    assert _final(toy(tmp_path / "w", 4, 2))["steps"] == 4


@pytest.mark.slow
def test_kill_second_run_on_the_same_workdir_is_refused(tmp_path, record_property):
    w = tmp_path / "w"
    first = subprocess.Popen(
        [sys.executable, TOY_RUN, "run", str(w), "300", "100"],
        cwd=ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.time() + TIMEOUT
        while not (w / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.1)
        r = toy(w, 300, 100)
        check_failed_process(
            r, record_property, f"--workdir {w}", "in use by another run", f"pid {first.pid}"
        )
        out, _ = first.communicate(timeout=TIMEOUT)
    finally:
        first.kill()
    assert first.returncode == 0 and json.loads(out.strip().splitlines()[-1])["steps"] == 300


@pytest.mark.slow
def test_kill_non_finite_first_start_then_corrected_command(tmp_path, record_property):
    """lr=1e30 diverges at once, before the first checkpoint: one line naming the step and the
    flag; the corrected command in the same workdir then runs (nothing blocks it)."""
    w = tmp_path / "w"
    r = toy(w, 4, 2, "optimizer.learning_rate=1e30", "optimizer.clip_norm=0.0")
    check_failed_process(
        r, record_property, "non-finite", "at step", "--config.optimizer.learning_rate"
    )
    assert not (w / "config.json").exists() and tmp_checkpoints(w) == []
    final = _final(toy(w, 4, 2))
    assert final["steps"] == 4 and math.isfinite(final["test_loss"])


@pytest.mark.slow
def test_kill_skipped_audio_is_recorded_in_final_json(tmp_path, record_property):
    root = _fake_fsdd(tmp_path / "fsdd", bad=(2, "ann", 11))
    script = (
        f"import sys; sys.path.insert(0, {HERE!r}); from toy import small_config; "
        "from rnnbench import errors, train; c = small_config(); "
        f"c.dataset, c.data_dir = 'fsdd', {str(root)!r}; "
        "c.data.options = {'on_error': 'skip'}; "
        "errors.call(train.train_and_evaluate, c, sys.argv[1], wandb_mode='disabled', "
        "progress=False)"
    )
    r = run(["-c", script, str(tmp_path / "w")], timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    final = json.loads((tmp_path / "w" / "final.json").read_text())
    assert final["skipped_audio_files"] == [str(root / "recordings" / "2_ann_11.wav")]
    record_property("result", "final.json skipped_audio_files = ['.../2_ann_11.wav']")


def _unretrieved_task_failure(filename: str) -> None:
    """Runs a task whose coroutine (defined in `filename`) raises and is never awaited for its
    result, then collects it: asyncio logs "Task exception was never retrieved"."""
    import asyncio
    import gc

    scope = {}
    exec(
        compile(
            "async def read_shard():\n    raise ValueError('OUT_OF_RANGE')\n", filename, "exec"
        ),
        scope,
    )
    loop = asyncio.new_event_loop()
    task = loop.create_task(scope["read_shard"]())
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    del task
    gc.collect()


def test_checkpoint_orbax_task_failures_collected_later_are_not_printed(caplog):
    """A failed orbax read/write can leave a task whose exception asyncio logs (with a traceback)
    when it is collected, after the one-line CheckpointError; those records are dropped, while
    the same failure from any other code is still logged."""
    with train._quiet_orbax():
        pass
    with caplog.at_level("ERROR", logger="asyncio"):
        _unretrieved_task_failure("/site-packages/orbax/checkpoint/serialization.py")
        assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
        _unretrieved_task_failure("/home/user/my_code.py")
        logged = [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]
        assert len(logged) == 1 and "my_code.py" in logged[0]
