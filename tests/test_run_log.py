"""What a run writes (rnnbench.run_log): metrics.jsonl, final.json, resuming, and W&B offline files."""

import glob
import json
import os
import re
import struct
import time

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from rnnbench import run_log

CONFIG = ml_collections.ConfigDict({"model": {"hidden": 8, "cell": "gru"}, "seed": 3})


def _events(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_metrics_jsonl_and_final_json(tmp_path):
    log = run_log.RunLog(str(tmp_path), CONFIG, wandb_mode="disabled")
    log.write(1, "train", loss=np.float32(0.5), time_s=1.5)
    log.write(np.int64(2), "validation", accuracy=jnp.float32(0.75))
    log.finish({"test_accuracy": 0.8, "steps": 2})
    assert _events(tmp_path) == [
        {"step": 1, "split": "train", "loss": 0.5, "time_s": 1.5},
        {"step": 2, "split": "validation", "accuracy": 0.75},
    ]
    with open(tmp_path / "final.json") as f:
        assert json.load(f) == {"steps": 2, "test_accuracy": 0.8}
    assert not os.path.exists(tmp_path / "wandb")  # disabled: nothing of W&B's


def test_resume_truncates_after_the_step(tmp_path):
    log = run_log.RunLog(str(tmp_path), CONFIG, wandb_mode="disabled")
    for step in (1, 2, 3, 4):
        log.write(step, "train", loss=1.0 / step, time_s=10.0 * step)
    log.write(2, "validation", accuracy=0.5, time_s=25.0)  # logged late, still at step 2
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "split": "tr')  # a line cut short by a kill
    resumed = run_log.RunLog(str(tmp_path), CONFIG, wandb_mode="disabled", resume_step=2)
    assert [(e["step"], e["split"]) for e in _events(tmp_path)] == [
        (1, "train"),
        (2, "train"),
        (2, "validation"),
    ]
    assert resumed.time_offset == 25.0  # the clock continues from the last kept event
    resumed.write(3, "train", loss=0.3)
    assert [e["step"] for e in _events(tmp_path)] == [1, 2, 2, 3]
    # from scratch (step 0) nothing is kept and the clock starts at 0
    fresh = run_log.RunLog(str(tmp_path), CONFIG, wandb_mode="disabled", resume_step=0)
    assert _events(tmp_path) == [] and fresh.time_offset == 0.0


def test_config_json_written_then_checked(tmp_path):
    run_log.check_or_write_config(str(tmp_path), CONFIG)
    with open(tmp_path / "config.json") as f:
        assert json.load(f) == {"model": {"cell": "gru", "hidden": 8}, "seed": 3}
    run_log.check_or_write_config(str(tmp_path), CONFIG)  # the same config: resumes
    other = ml_collections.ConfigDict(CONFIG.to_dict())
    other.model.hidden = 16
    other.lr = 0.1
    with pytest.raises(ValueError, match=r"different config \(differs in lr, model.hidden\)"):
        run_log.check_or_write_config(str(tmp_path), other)


def test_bad_wandb_mode(tmp_path):
    with pytest.raises(ValueError, match="wandb mode must be one of .* got 'on'"):
        run_log.RunLog(str(tmp_path), CONFIG, wandb_mode="on")


# ----------------------------------------------------------------------------- W&B offline


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """wandb importable, with its settings, cache and data kept in tmp_path (not in $HOME)."""
    wandb = pytest.importorskip("wandb", reason="wandb is not installed")
    for name in ("WANDB_MODE", "WANDB_DISABLED", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name in ("CONFIG", "CACHE", "DATA"):
        monkeypatch.setenv(f"WANDB_{name}_DIR", str(tmp_path / f"wandb_{name.lower()}"))
    return wandb


def _wandb_records(path):
    """Records of a .wandb file: a LevelDB-style log (7-byte file header ':W&B' + magic +
    version; 32 KiB blocks of chunks, each with a 7-byte header crc32c, length, type)."""
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", data[:7]
    block, pos, buf = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (n == 0 and kind == 0):  # block trailer or zero padding
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):  # FULL or LAST chunk
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buf)
            yield record
            buf = b""


def _finished_records(path, timeout_s=30.0):
    """The records once the exit record is on disk (wandb.finish returns before its service
    has flushed the offline file; here that took ~50 ms)."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = list(_wandb_records(path))
        if any(r.HasField("exit") for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def _items(items):
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}


def _offline_runs(workdir):
    return sorted(glob.glob(os.path.join(workdir, "wandb", "offline-run-*")))


def test_wandb_offline_writes_the_logged_metrics(tmp_path, wandb_env):
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    log = run_log.RunLog(workdir, CONFIG, wandb_mode="offline")
    assert log.wandb is not None and log.wandb_mode == "offline", "W&B did not start offline"
    log.write(1, "train", loss=0.5, accuracy=0.25)
    log.write(2, "train", loss=0.25)
    log.write(2, "validation", accuracy=0.75)
    log.finish({"test_accuracy": 0.8, "num_params": 123})

    (run_dir,) = _offline_runs(workdir)
    with open(os.path.join(workdir, "wandb_run_id")) as f:
        run_id = f.read()
    assert run_dir.endswith("-" + run_id)
    records = _finished_records(os.path.join(run_dir, f"run-{run_id}.wandb"))
    assert any(r.HasField("exit") for r in records), "no exit record: the run did not finish"
    history = [_items(r.history.item) for r in records if r.HasField("history")]
    assert [
        {k: v for k, v in h.items() if not k.startswith("_")} | {"_step": h["_step"]}
        for h in history
    ] == [
        {"train/loss": 0.5, "train/accuracy": 0.25, "_step": 1},
        {"train/loss": 0.25, "validation/accuracy": 0.75, "_step": 2},
    ]
    summary = {}
    for r in records:
        if r.HasField("summary"):
            summary.update(_items(r.summary.update))
    assert summary["test_accuracy"] == 0.8 and summary["num_params"] == 123
    (run,) = [r.run for r in records if r.HasField("run")]
    config = _items(run.config.update)
    assert run.run_id == run_id and run.project == "rnnbench" and run.display_name == "run"
    assert config["seed"] == 3 and config["model"] == {"hidden": 8, "cell": "gru"}

    # a resumed run continues the same W&B run id in a new offline directory
    resumed = run_log.RunLog(workdir, CONFIG, wandb_mode="offline", resume_step=1)
    resumed.write(2, "train", loss=0.125)
    resumed.finish({"test_accuracy": 0.9})
    runs = _offline_runs(workdir)
    # (wandb adds "-1" to a directory whose name, to the second, is taken: a resume in the
    # same second as the first run)
    assert len(runs) == 2 and all(re.search(f"-{run_id}(-[0-9]+)?$", r) for r in runs), runs
    resumed_history = [
        _items(r.history.item)
        for r in _finished_records(os.path.join(runs[-1], f"run-{run_id}.wandb"))
        if r.HasField("history")
    ]
    assert [(h["_step"], h["train/loss"]) for h in resumed_history] == [(2, 0.125)]
    assert [(e["step"], e.get("loss")) for e in _events(workdir)] == [(1, 0.5), (2, 0.125)]


def test_wandb_failure_never_fails_the_run(tmp_path, wandb_env, monkeypatch, capsys):
    def broken_init(**kw):
        raise RuntimeError("no network")

    monkeypatch.setattr(wandb_env, "init", broken_init)
    log = run_log.RunLog(str(tmp_path), CONFIG, wandb_mode="offline")
    assert log.wandb is None and log.wandb_mode == "disabled"
    assert "W&B could not start in offline mode (RuntimeError: no network)" in (
        capsys.readouterr().err
    )
    log.write(1, "train", loss=0.5)
    log.finish({"test_accuracy": 0.5})
    assert _events(tmp_path) == [{"step": 1, "split": "train", "loss": 0.5}]
    assert os.path.exists(tmp_path / "final.json")
