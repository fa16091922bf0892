"""The training loop: overfitting, losses, non-finite handling, CTC checks, config errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from toy import small_config, tone_dataset

from experiments.configs import common, ctc
from rnnbench import input_pipeline, objectives, optim, train
from rnnbench.data import batching
from rnnbench.objectives import ctc as ctc_objective


def _overfit(config, dataset, steps=40):
    objective = objectives.make(config, dataset)
    graphdef, state, tx, _ = train.init_state(config, dataset, objective)
    train_step, _ = train.make_steps(config, graphdef, tx, objective)
    step = jax.jit(train_step)
    batch = next(
        batching.train_batches(
            dataset.splits["train"],
            batch_size=config.batch_size,
            seed=0,
            buckets=input_pipeline.auto_buckets(dataset),
            encode=objective.encoder(dataset),
        )
    )
    losses = []
    for _ in range(steps):
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    return losses, m


@pytest.mark.parametrize(
    "variant,extra",
    [
        ("lstm", {}),
        ("gru_mean", {}),
        ("rnn_attn", {}),
        ("bigru_selfattn", {}),
        ("lstm2", {"residual": True, "layer_norm": True, "zoneout": 0.1, "recurrent_dropout": 0.1}),
    ],
)
def test_classifier_overfits_one_batch(variant, extra):
    config = small_config(variant, **extra)
    config.optimizer.learning_rate = 1e-2
    losses, m = _overfit(config, tone_dataset())
    assert losses[-1] < 0.1 * losses[0], losses[::10]
    assert float(m["accuracy"]) == 1.0


def test_ctc_overfits_one_batch():
    config = ctc.get_config("bigru")
    config.model.hidden = 32
    config.batch_size = 8
    config.features.n_mels = 16
    config.buckets = ()
    config.optimizer.learning_rate = 1e-2
    config.optimizer.warmup_steps = 0
    config.optimizer.schedule = "constant"
    losses, _ = _overfit(config, tone_dataset("ctc"), steps=120)
    assert losses[-1] < 0.1 * losses[0], losses[::20]


def test_regularisers_add_loss_terms():
    config = small_config("lstm", aux_ae_weight=0.5)
    config.optimizer.stability_beta = 0.1
    config.optimizer.l1 = 1e-4
    config.optimizer.l2 = 1e-3
    losses, m = _overfit(config, tone_dataset(), steps=2)
    for term in ("stability", "reconstruction", "weight_penalty"):
        assert float(m[term]) > 0
    total = sum(float(m[k]) for k in ("task_loss", "stability", "reconstruction", "weight_penalty"))
    np.testing.assert_allclose(float(m["loss"]), total, rtol=1e-5)


def test_stability_penalty_by_hand():
    h = jnp.array([[[0.0], [1.0], [3.0], [9.0]]])  # diffs 1, 2, 6 -> squares 1, 4, 36
    np.testing.assert_allclose(optim.stability_penalty(h, jnp.array([3])), (1 + 4) / 2)
    np.testing.assert_allclose(optim.stability_penalty(h, jnp.array([4])), (1 + 4 + 36) / 3)


def test_full_run_writes_workdir_and_resumes(tmp_path):
    config = small_config("gru")
    ds = tone_dataset()
    final = train.train_and_evaluate(
        config, str(tmp_path), wandb_mode="disabled", progress=False, dataset=ds
    )
    for name in ("config.json", "metrics.jsonl", "final.json"):
        assert (tmp_path / name).exists()
    assert 0.0 <= final["test_accuracy"] <= 1.0 and final["num_params"] > 0
    assert final["test_examples"] == len(ds.splits["test"])  # nothing dropped
    events = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
    assert {e["split"] for e in events} == {"train", "validation", "test"}
    assert all("step" in e for e in events)
    # a second call finds the finished run and returns its results without training
    again = train.train_and_evaluate(
        config, str(tmp_path), wandb_mode="disabled", progress=False, dataset=ds
    )
    assert again == json.load(open(tmp_path / "final.json"))
    # a different config in the same workdir is refused
    config.model.hidden = 32
    with pytest.raises(ValueError, match="different config.*model.hidden"):
        train.train_and_evaluate(
            config, str(tmp_path), wandb_mode="disabled", progress=False, dataset=ds
        )


def nan_at_step(k):
    """An optax transform that turns the updates of step k (1-based) into NaN."""

    def init(params):
        return jnp.zeros((), jnp.int32)

    def update(updates, count, params=None):
        bad = count + 1 == k
        return jax.tree.map(lambda u: jnp.where(bad, jnp.nan, u), updates), count + 1

    return optax.GradientTransformation(init, update)


def test_non_finite_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    config = small_config("lstm")
    config.num_steps = 6
    config.checkpoint_every = 1
    make = optim.make_optimizer
    monkeypatch.setattr(
        train, "make_optimizer", lambda c, n: optax.chain(make(c, n), nan_at_step(4))
    )
    with pytest.raises(FloatingPointError, match=r"non-finite .* at step 4 .*step 3\)"):
        train.train_and_evaluate(
            config, str(tmp_path), wandb_mode="disabled", progress=False, dataset=tone_dataset()
        )
    mngr = train._checkpoint_manager(str(tmp_path), config)
    last = mngr.latest_step()
    assert last == 3
    restored = mngr.restore(last)
    mngr.close()
    leaves = jax.tree.leaves(restored)
    assert leaves and all(
        np.all(np.isfinite(np.asarray(x)))
        for x in leaves
        if np.issubdtype(np.asarray(x).dtype, np.floating)
    )
    assert not (tmp_path / "final.json").exists()


def test_ctc_length_check_names_the_example():
    config = ctc.get_config("lstm")
    ds = tone_dataset("ctc")
    ds.splits["train"].transcripts[3] = "abababababababababababababababab"  # 32 labels, ~0.2 s
    with pytest.raises(ValueError, match=r"train example 3 .* need >= \d+ frames for CTC"):
        ctc_objective.check_ctc_lengths(config, ds)


@pytest.mark.parametrize(
    "path,value,match",
    [
        ("model.cell", "lsmt", "unknown config.model.cell 'lsmt'; known:.*lstm"),
        ("model.pooling", "max", "unknown config.model.pooling 'max'"),
        ("model.kind", "seq2seq", "unknown config.model.kind"),
        ("optimizer.name", "adagrad", "unknown config.optimizer.name 'adagrad'"),
        ("optimizer.schedule", "linear", "unknown config.optimizer.schedule"),
        ("dataset", "timit", "unknown config.dataset 'timit'"),
        ("batch_size", 0, "config.batch_size must be positive"),
        ("model.hidden", -1, "config.model.hidden must be positive"),
        ("optimizer.warmup_steps", -5, "config.optimizer.warmup_steps must be >= 0"),
    ],
)
def test_config_errors(path, value, match):
    config = small_config()
    *parents, leaf = path.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ValueError, match=match):
        train.check_config(config)


def test_warmup_longer_than_a_cosine_run_is_refused_by_name():
    """optax would raise 'requires positive decay_steps' from deep inside the optimizer."""
    config = small_config()
    config.optimizer.schedule, config.optimizer.warmup_steps = "cosine", 50
    config.num_steps = 50
    with pytest.raises(
        ValueError,
        match=r"warmup_steps=50 .*config.num_steps=50; lower "
        r"--config.optimizer.warmup_steps",
    ):
        train.check_config(config)
    config.num_steps = 51
    train.check_config(config)  # one decay step is enough
    optim.make_optimizer(config.optimizer, config.num_steps)


def test_variant_parsing():
    c = common.apply_variant(common.base_config(), "bigru2_selfattn")
    assert (c.model.cell, c.model.bidirectional, c.model.layers) == ("gru", True, 2)
    assert c.model.attention_heads == 4
    c = common.apply_variant(common.base_config(), "lstm_attn")
    assert c.model.pooling == "attention"
    with pytest.raises(ValueError, match="cannot parse config variant"):
        common.apply_variant(common.base_config(), "LSTM!")


def test_vmapped_seeds_match_separate_runs(tmp_path):
    """3 seeds in one vmapped program vs 3 separate runs, 20 steps each. vmap batches the matmuls
    differently, so float sums can reorder: tolerance 1e-4 relative on losses and metrics."""
    ds = tone_dataset()
    configs = []
    for seed in range(3):
        c = small_config("gru")
        c.num_steps, c.eval_every, c.checkpoint_every, c.log_every = 20, 10, 10, 5
        c.seed = seed
        configs.append(c)
    together = train.train_and_evaluate_many(
        configs,
        [str(tmp_path / f"v{s}") for s in range(3)],
        wandb_mode="disabled",
        progress=False,
        dataset=ds,
    )
    for seed, (c, got) in enumerate(zip(configs, together)):
        alone = train.train_and_evaluate(
            c, str(tmp_path / f"s{seed}"), wandb_mode="disabled", progress=False, dataset=ds
        )
        assert got["models_in_program"] == 3 and alone["models_in_program"] == 1
        for k in ("val_loss", "test_loss", "val_accuracy", "test_accuracy"):
            np.testing.assert_allclose(got[k], alone[k], rtol=1e-4, atol=1e-6, err_msg=k)
        ev = lambda d: [json.loads(l) for l in open(tmp_path / d / "metrics.jsonl")]
        tr_v = [e["loss"] for e in ev(f"v{seed}") if e["split"] == "train"]
        tr_s = [e["loss"] for e in ev(f"s{seed}") if e["split"] == "train"]
        assert len(tr_v) == len(tr_s) == 4
        np.testing.assert_allclose(tr_v, tr_s, rtol=1e-4)
    # different seeds really are different models
    assert together[0]["val_loss"] != together[1]["val_loss"]


def test_vmapped_runs_must_differ_only_in_seed(tmp_path):
    a, b = small_config("gru"), small_config("gru")
    b.seed, b.model.hidden = 1, 32
    with pytest.raises(ValueError, match="differ only in .*seed.*model.hidden"):
        train.train_and_evaluate_many(
            [a, b],
            [str(tmp_path / "a"), str(tmp_path / "b")],
            wandb_mode="disabled",
            progress=False,
            dataset=tone_dataset(),
        )


@pytest.mark.parametrize(
    "args,match",
    [
        (
            ["--config=experiments/configs/kws.py", "--config.model.hiden=3"],
            "config override names a field the config does not have: 'hiden'",
        ),
        (["--config=experiments/configs/kws.py:lsmt"], "unknown config.model.cell 'lsmt'"),
        (["--config=experiments/configs/kws.py", "--seeds=0,1"], "--seeds has 2 entries"),
    ],
)
def test_cli_rejects_bad_flags_before_any_work(tmp_path, args, match):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run(
        [sys.executable, "-m", "experiments.train", f"--workdir={tmp_path}/w", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    assert match in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not os.path.exists(tmp_path / "w" / "config.json")


def test_vmapped_runs_stopped_at_different_steps_resume_to_the_same_results(tmp_path):
    """Seed 0 stopped at step 4 and seed 1 at step 8 cannot share one program: each resumes
    alone from its own checkpoint and ends exactly where runs never stopped end."""
    ds = tone_dataset()

    def cfg(seed, steps):
        c = small_config("gru")
        c.num_steps, c.eval_every, c.checkpoint_every, c.log_every = steps, 4, 4, 1
        c.seed = seed
        return c

    ref = train.train_and_evaluate_many(
        [cfg(0, 12), cfg(1, 12)],
        [str(tmp_path / "r0"), str(tmp_path / "r1")],
        wandb_mode="disabled",
        progress=False,
        dataset=ds,
    )
    # leave seed 0 with a step-4 checkpoint and seed 1 with a step-8 one (and no final.json)
    for seed, stop in ((0, 4), (1, 8)):
        train.train_and_evaluate(
            cfg(seed, stop),
            str(tmp_path / f"p{seed}"),
            wandb_mode="disabled",
            progress=False,
            dataset=ds,
        )
        (tmp_path / f"p{seed}" / "final.json").unlink()
        (tmp_path / f"p{seed}" / "config.json").unlink()  # same run, now with 12 steps
    resumed = train.train_and_evaluate_many(
        [cfg(0, 12), cfg(1, 12)],
        [str(tmp_path / "p0"), str(tmp_path / "p1")],
        wandb_mode="disabled",
        progress=False,
        dataset=ds,
    )
    assert [r["resumed_from_step"] for r in resumed] == [4, 8]
    assert [r["models_in_program"] for r in resumed] == [1, 1]
    for got, want in zip(resumed, ref):
        for k in ("val_loss", "test_loss", "test_accuracy"):
            np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-6, err_msg=k)
