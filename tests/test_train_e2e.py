"""End-to-end properties of the loop, each in fresh subprocesses: data-parallel sharding gives the
same losses as one device, and a run killed with SIGKILL resumes to bitwise-identical params."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "toy_run.py")


def _run(args, devices=1, **kw):
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
    )
    return subprocess.run(
        [sys.executable, SCRIPT, *args], env=env, capture_output=True, text=True, timeout=600, **kw
    )


def test_sharded_over_4_devices_matches_1_device():
    outs = {}
    for n in (1, 4):
        r = _run(["losses", "5"], devices=n)
        assert r.returncode == 0, r.stderr[-3000:]
        outs[n] = json.loads(r.stdout.strip().splitlines()[-1])
    assert outs[4]["devices"] == 4 and outs[1]["devices"] == 1
    np.testing.assert_allclose(outs[4]["losses"], outs[1]["losses"], rtol=1e-5, atol=1e-5)
    assert outs[1]["losses"][-1] < outs[1]["losses"][0]


def _final_params(workdir):
    mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
    restored = mngr.restore(mngr.latest_step())
    step = mngr.latest_step()
    mngr.close()
    return step, restored["params"]


@pytest.mark.slow
def test_sigkill_and_resume_is_bitwise_identical(tmp_path):
    steps, every = 40, 5
    ref_dir, kill_dir = str(tmp_path / "ref"), str(tmp_path / "killed")
    r = _run(["train", ref_dir, str(steps), str(every)])
    assert r.returncode == 0, r.stderr[-3000:]

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, "train", kill_dir, str(steps), str(every)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ckpt = os.path.join(kill_dir, "checkpoints")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # kill once step 15 is saved
        if os.path.isdir(ckpt) and any(d.isdigit() and int(d) >= 15 for d in os.listdir(ckpt)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(kill_dir, "final.json"))

    r = _run(["train", kill_dir, str(steps), str(every)])
    assert r.returncode == 0, r.stderr[-3000:]
    final = json.loads(r.stdout.strip().splitlines()[-1])
    assert 15 <= final["resumed_from_step"] < steps

    (s_ref, p_ref), (s_kill, p_kill) = _final_params(ref_dir), _final_params(kill_dir)
    assert s_ref == s_kill == steps
    ref_leaves, kill_leaves = jax.tree.leaves(p_ref), jax.tree.leaves(p_kill)
    assert len(ref_leaves) == len(kill_leaves) > 0
    for a, b in zip(ref_leaves, kill_leaves):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bitwise
    ref_final = json.load(open(os.path.join(ref_dir, "final.json")))
    assert final["test_accuracy"] == ref_final["test_accuracy"]
    assert final["test_loss"] == ref_final["test_loss"]
    # metrics.jsonl of the resumed run holds each step once
    steps_logged = [
        json.loads(l)["step"]
        for l in open(os.path.join(kill_dir, "metrics.jsonl"))
        if json.loads(l)["split"] == "train"
    ]
    assert steps_logged == sorted(set(steps_logged)) == list(range(1, steps + 1))


def test_two_vmapped_seeds_on_4_devices_match_1_device(tmp_path):
    """The real loop (train_and_evaluate_many: data sharded over 4 fake devices, 2 seeds vmapped
    in one program) gives the single-device results up to float reordering."""
    script = os.path.join(HERE, "toy_seeds.py")
    outs = {}
    for n in (1, 4):
        env = dict(
            os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu"
        )
        r = subprocess.run(
            [sys.executable, script, str(tmp_path / f"d{n}_s"), "6", "0,1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        outs[n] = json.loads(r.stdout.strip().splitlines()[-1])
    assert outs[1]["devices"] == 1 and outs[4]["devices"] == 4
    for one, four in zip(outs[1]["finals"], outs[4]["finals"]):
        assert four["models_in_program"] == 2 and len(four["devices"]) == 4
        for k in ("val_loss", "test_loss", "test_accuracy"):
            np.testing.assert_allclose(four[k], one[k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert outs[1]["finals"][0]["test_loss"] != outs[1]["finals"][1]["test_loss"]
