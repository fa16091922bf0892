"""Synthetic long-range tasks (rnnbench.tasks) and the delayed keyword recall loader."""

import math

import jax
import numpy as np
import pytest

from rnnbench import tasks

KEY = jax.random.PRNGKey(0)


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "name,params,total,n_in,n_out",
    [
        ("adding", {"length": 7}, 7, 2, 1),
        ("copy", {"length": 3}, 23, 10, 8),
        ("copy", {"length": 0}, 20, 10, 8),
        ("selective", {"length": 9, "num_tokens": 3}, 12, 10, 8),
    ],
)
def test_shapes(name, params, total, n_in, n_out):
    t = tasks.make(name, **params)
    b = jax.device_get(t.batch(KEY, 5))
    assert b["inputs"].shape == (5, total, n_in) and b["inputs"].dtype == np.float32
    assert (b["lengths"] == total).all() and b["weights"].shape == (5,)
    assert t.num_inputs == n_in and t.num_outputs == n_out and t.seq_len == total
    if t.task == "tag":
        assert b["targets"].shape == (5, total) and b["target_mask"].shape == (5, total)
        assert np.allclose(b["inputs"].sum(-1), 1.0)  # one-hot
    else:
        assert b["targets"].shape == (5,)


# ----------------------------------------------------------------------------- labels


def test_adding_labels():
    b = jax.device_get(tasks.make("adding", length=6).batch(KEY, 16))
    v, m = b["inputs"][..., 0], b["inputs"][..., 1]
    assert (m.sum(1) == 2).all()
    assert (m[:, :3].sum(1) == 1).all() and (m[:, 3:].sum(1) == 1).all()
    np.testing.assert_allclose(b["targets"], (v * m).sum(1), rtol=1e-6)


def test_copy_labels_hand_checked():
    t = tasks.make("copy", length=2, copy_len=3, num_symbols=4)  # blank 4, delimiter 5
    b = jax.device_get(t.batch(KEY, 4))
    tok = b["inputs"].argmax(-1)
    for r in range(4):
        sym = tok[r, :3]
        assert (sym < 4).all()
        # 3 symbols, 2 blanks, delimiter, 2 blanks
        assert list(tok[r, 3:]) == [4, 4, 5, 4, 4]
        assert list(b["target_mask"][r]) == [0, 0, 0, 0, 0, 1, 1, 1]
        assert list(b["targets"][r, 5:]) == list(sym)
    assert t.baseline == pytest.approx(math.log(4))


def test_selective_labels_hand_checked():
    t = tasks.make("selective", length=10, num_tokens=3, num_symbols=4)  # noise 4, delimiter 5
    b = jax.device_get(t.batch(KEY, 32))
    tok = b["inputs"].argmax(-1)
    positions = set()
    for r in range(32):
        body = tok[r, :10]
        pos = np.flatnonzero(body < 4)
        assert len(pos) == 3 and (body[np.setdiff1d(np.arange(10), pos)] == 4).all()
        positions.add(tuple(pos))
        assert list(tok[r, 10:]) == [5, 4, 4]
        assert list(b["targets"][r, 10:]) == list(body[pos])  # in order of appearance
        assert list(b["target_mask"][r]) == [0] * 10 + [1] * 3
    assert len(positions) > 20  # positions are random per example (content-dependent memory)


@pytest.mark.parametrize(
    "name,params",
    [("adding", {"length": 20}), ("copy", {"length": 5}), ("selective", {"length": 12})],
)
def test_deterministic_from_seed(name, params):
    t = tasks.make(name, **params)
    a, b = t.batch(jax.random.PRNGKey(3), 8), t.batch(jax.random.PRNGKey(3), 8)
    c = t.batch(jax.random.PRNGKey(4), 8)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["inputs"], c["inputs"])


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("copy", {"length": -1}, "copy: length must be an int >= 0"),
        ("adding", {"length": 1}, "adding: length must be an int >= 2"),
        (
            "selective",
            {"length": 2, "num_tokens": 3},
            "selective: length must be an int >= num_tokens",
        ),
        ("copy", {"num_symbols": 1}, "num_symbols"),
        ("nope", {}, "unknown task 'nope'; expected one of"),
        ("copy", {"bogus": 1}, "bad parameters for task 'copy'"),
    ],
)
def test_bad_input(name, params, match):
    with pytest.raises(ValueError, match=match):
        tasks.make(name, **params)


def test_train_rejects_unknown_task_and_cell():
    from experiments.configs import longrange
    from rnnbench import train

    c = longrange.get_config("adding_gru")
    c.dataset = "task:nope"
    with pytest.raises(ValueError, match="unknown config.dataset"):
        train.check_config(c)
    c = longrange.get_config("adding_gru")
    c.model.cell = "transformer"
    with pytest.raises(ValueError, match="unknown config.model.cell 'transformer'; known"):
        train.check_config(c)
    with pytest.raises(ValueError, match="unknown longrange task"):
        longrange.get_config("sorting_gru")


# ----------------------------------------------------------------------------- learning


def _train(tmp_path, variant, steps, **task):
    from experiments.configs import longrange
    from rnnbench import train

    c = longrange.get_config(variant)
    c.task.update(task)
    c.model.hidden = 32
    c.batch_size = 32
    c.num_steps = steps
    c.eval_every = steps
    c.checkpoint_every = steps
    c.task_eval_size = 256
    return train.train_and_evaluate(
        c, str(tmp_path / variant), wandb_mode="disabled", progress=False
    ), tasks.make(variant.split("_")[0], **task)


@pytest.mark.slow
def test_adding_learns(tmp_path):
    final, t = _train(tmp_path, "adding_gru", 300, length=10)
    assert final["test_loss"] < 0.5 * t.baseline


@pytest.mark.slow
def test_copy_learns(tmp_path):
    final, t = _train(tmp_path, "copy_gru", 300, length=2, copy_len=3)
    assert final["test_loss"] < 0.8 * t.baseline and final["test_accuracy"] > 0.3


@pytest.mark.slow
def test_selective_learns(tmp_path):
    final, t = _train(tmp_path, "selective_gru", 300, length=6, num_tokens=2)
    assert final["test_loss"] < 0.8 * t.baseline and final["test_accuracy"] > 0.3


# ----------------------------------------------------------------------------- recall loader


@pytest.fixture(scope="module")
def tiny_commands(tmp_path_factory):
    """A small synth_commands corpus for seeds 0 and 1 (cached in a temp dir), built once.

    eSpeak NG comes with the required `espeakng-loader` package, so a failure to build is a
    failure, not a skip."""
    from rnnbench import data

    cache = str(tmp_path_factory.mktemp("cache"))
    opts = {"train_size": 48, "validation_size": 24, "test_size": 24}
    for seed in (0, 1):
        data.load("synth_commands", cache_dir=cache, seed=seed, **opts)
    return cache, opts


def test_recall_examples(tiny_commands):
    from rnnbench import data
    from rnnbench.data.synth import COMMANDS_10

    cache, opts = tiny_commands
    base = data.load("synth_commands", cache_dir=cache, **opts)
    d = data.load(
        "synth_recall",
        cache_dir=cache,
        delay_s=0.5,
        train_size=40,
        validation_size=8,
        test_size=8,
        base_options=opts,
    )
    assert d.task == "classify" and d.classes == COMMANDS_10
    tr = d.splits["train"]
    assert len(tr) == 40 and tr.labels.shape == (40,) and (tr.labels < 10).all()
    kw_clips = {
        base.splits["train"].audio[i].tobytes(): base.splits["train"].labels[i] - 2
        for i in np.flatnonzero(base.splits["train"].labels >= 2)
    }
    other = {
        base.splits["train"].audio[i][:8000].tobytes()
        for i in np.flatnonzero(base.splits["train"].labels < 2)
    }
    for i in range(40):
        a = tr.audio[i]
        assert a.dtype == np.int16 and a.shape == (24000,)
        assert kw_clips[a[:16000].tobytes()] == tr.labels[i]  # the keyword clip and its label
        assert a[16000:].tobytes() in other  # 0.5 s cut from a non-keyword clip
    # deterministic from the seed; another seed mixes differently
    kw = {
        "cache_dir": cache,
        "delay_s": 0.5,
        "train_size": 40,
        "validation_size": 8,
        "test_size": 8,
        "base_options": opts,
    }
    d2 = data.load("synth_recall", seed=0, **kw)
    assert all(np.array_equal(d2.splits["train"].audio[i], tr.audio[i]) for i in range(40))
    np.testing.assert_array_equal(d2.splits["train"].labels, tr.labels)
    d3 = data.load("synth_recall", seed=1, **kw)
    other_audio = d3.splits["train"].audio
    assert sum(np.array_equal(other_audio[i], tr.audio[i]) for i in range(40)) == 0
    assert not np.array_equal(d3.splits["train"].labels, tr.labels)
    # the other splits draw on their own voices
    assert set(d.splits["test"].speakers) <= set(base.splits["test"].speakers)


def test_recall_bad_input():  # checked before any corpus is built
    from rnnbench import data

    with pytest.raises(ValueError, match="delay_s must be a number >= 0"):
        data.load("synth_recall", delay_s=-1.0)
    with pytest.raises(ValueError, match="protocol must be 12"):
        data.load("synth_recall", protocol=35)
    with pytest.raises(ValueError, match="distractors must be one of"):
        data.load("synth_recall", distractors="keywords")
