"""Speech synthesis: Tacotron shapes and masking, losses, free running under jit, Griffin-Lim,
distortion measures, and a tiny run trained, restored, synthesised and benchmarked."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
from flax import nnx
from toy import SR, small_config, tone_dataset

from experiments import tts_bench
from experiments.configs import tts as tts_config
from rnnbench import features, inference, metrics, objectives, synthesis, train, tts, vocoder
from rnnbench.data.audio import to_int16
from rnnbench.objectives import tts as tts_objective

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
M, C = 6, 5  # mel channels; characters 1..5


def _cfg(**kw):
    cfg = {
        "cell": "lstm",
        "hidden": 8,
        "layers": 1,
        "bidirectional": True,
        "embed": 8,
        "conv_channels": 8,
        "conv_layers": 2,
        "conv_kernel": 3,
        "decoder_cell": "gru",
        "decoder_hidden": 16,
        "decoder_layers": 2,
        "prenet": (8, 8),
        "attention_dim": 8,
        "loc_filters": 3,
        "loc_width": 5,
        "reduction": 2,
        "postnet_channels": 8,
        "postnet_layers": 3,
        "postnet_kernel": 3,
    }
    cfg.update(kw)
    return cfg


def _teacher_forcing(model):
    graph, state = nnx.split(model)

    @jax.jit
    def f(state, ids, text_lengths, mels, mel_lengths):
        return nnx.merge(graph, state)(ids, text_lengths, mels=mels, mel_lengths=mel_lengths)

    return lambda *args: jax.tree.map(np.asarray, f(state, *args))


def test_shapes_masking_and_padding_invariance():
    model = tts.Tacotron(_cfg(), M, C, rngs=nnx.Rngs(0))
    tf = _teacher_forcing(model)
    rng = np.random.default_rng(0)
    ids = np.array([[1, 2, 3, 4, 5], [3, 1, 2, 0, 0]], np.int32)
    text_lengths = np.array([5, 3], np.int32)
    mels = rng.normal(size=(2, 7, M)).astype(np.float32)
    mel_lengths = np.array([7, 4], np.int32)
    out, aux = tf(ids, text_lengths, mels, mel_lengths)
    assert out["mel"].shape == out["mel_post"].shape == (2, 8, M)  # ceil(7 / 2) * 2 frames
    assert out["stop_logits"].shape == (2, 8)
    assert aux["alignments"].shape == (2, 4, 5) and aux["states"].shape == (2, 5, 16)
    np.testing.assert_allclose(aux["alignments"].sum(-1), 1.0, atol=1e-5)
    assert np.all(aux["alignments"][1, :, 3:] == 0.0)  # padded characters get no attention
    assert np.all(aux["states"][1, 3:] == 0.0)

    # more padding, full of garbage, on the text and the frames: the valid outputs do not move
    ids2 = np.concatenate([ids, np.full((2, 3), 4, np.int32)], 1)
    ids2[1, 3:5] = 2
    mels2 = np.concatenate([mels, 50.0 * rng.normal(size=(2, 4, M)).astype(np.float32)], 1)
    mels2[1, 4:7] = -80.0
    out2, aux2 = tf(ids2, text_lengths, mels2, mel_lengths)
    assert out2["mel"].shape == (2, 12, M) and aux2["alignments"].shape == (2, 6, 8)
    for b in range(2):
        n, steps, u = mel_lengths[b], -(-mel_lengths[b] // 2), text_lengths[b]
        for k in ("mel", "mel_post"):
            np.testing.assert_allclose(out2[k][b, :n], out[k][b, :n], atol=2e-5)
        np.testing.assert_allclose(
            out2["stop_logits"][b, : steps * 2], out["stop_logits"][b, : steps * 2], atol=2e-5
        )
        np.testing.assert_allclose(
            aux2["alignments"][b, :steps, :u], aux["alignments"][b, :steps, :u], atol=1e-6
        )


def test_guided_attention_known_values():
    eye = jnp.eye(2)[None]
    anti = jnp.eye(2)[::-1][None]
    one, two = jnp.array([2]), jnp.array([2])
    assert float(tts.guided_attention_loss(eye, one, two)[0]) == pytest.approx(0.0, abs=1e-7)
    w = 1.0 - math.exp(-0.25 / (2 * 0.2**2))  # |u/U - n/N| = 0.5 off the diagonal
    assert float(tts.guided_attention_loss(anti, one, two)[0]) == pytest.approx(w / 2, rel=1e-5)
    # padded steps and characters are left out of the mean
    big = jnp.zeros((1, 3, 4)).at[0, :2, :2].set(anti[0]).at[0, 2].set(1.0)
    assert float(tts.guided_attention_loss(big, one, two)[0]) == pytest.approx(w / 2, rel=1e-5)


def _loss_setup(offset: float, garbage: float):
    """Teacher-forced outputs = targets + offset on valid frames, `garbage` past them."""
    objective = tts_objective.Synthesis(small_config())
    t, r, length = 6, 2, 5
    target = jnp.asarray(np.random.default_rng(0).normal(size=(1, t, M)), jnp.float32)
    valid = (jnp.arange(t) < length)[None, :, None]
    pred = jnp.where(valid, target + offset, garbage)
    stop_t = tts_objective.stop_targets(jnp.array([length]), t)
    outputs = {"mel": pred, "mel_post": pred, "stop_logits": jnp.where(stop_t > 0, 30.0, -30.0)}
    align = jnp.zeros((1, t // r, 3)).at[0, jnp.arange(3), jnp.arange(3)].set(1.0)
    aux = {
        "mels": target,
        "mel_lengths": jnp.array([length]),
        "alignments": align,
        "lengths": jnp.array([3]),
    }
    return objective, outputs, aux, {"weights": jnp.ones(1)}


def test_loss_is_masked_and_in_known_units():
    objective, outputs, aux, batch = _loss_setup(0.5, 0.5)
    loss, sums = objective.loss(outputs, aux, batch)
    ga = float(tts.guided_attention_loss(aux["alignments"], aux["lengths"], jnp.array([3]))[0])
    assert float(loss) == pytest.approx(0.25 + 0.25 + ga, abs=1e-5)  # MSE before + after
    m = objective.train_metrics(sums)
    assert float(m["mel_l1"]) == pytest.approx(0.5 * tts.MEL_SCALE, rel=1e-5)  # log-mel units
    assert float(m["stop_accuracy"]) == 1.0 and float(sums["stop_frames"]) == 6.0
    garbage = _loss_setup(0.5, 1e3)
    loss2, sums2 = garbage[0].loss(*garbage[1:])
    assert float(loss2) == pytest.approx(float(loss), abs=1e-6)
    assert float(sums2["l1_sum"]) == pytest.approx(float(sums["l1_sum"]), rel=1e-6)


def test_objective_rejects_configs_that_cannot_work():
    ds = tone_dataset("ctc")
    c = tts_config.get_config("lstm")
    c.spec_augment.enabled = True
    with pytest.raises(ValueError, match="spec_augment"):
        objectives.make(c, ds)
    c = tts_config.get_config("lstm")
    c.features.kind = "mfcc"
    with pytest.raises(ValueError, match="features.kind must be 'logmel'"):
        objectives.make(c, ds)
    c = tts_config.get_config("lstm")
    c.model.mel_loss = "huber"
    with pytest.raises(ValueError, match="mel_loss"):
        objectives.make(c, ds)
    with pytest.raises(ValueError, match="unknown tts config options"):
        tts_config.get_config("lstm,fast")


@pytest.mark.parametrize("cell", ["lstm", "mingru"])
def test_generate_runs_under_jit_matches_teacher_forcing_and_stops(cell):
    model = tts.Tacotron(_cfg(decoder_cell=cell, postnet_channels=0), M, C, rngs=nnx.Rngs(1))
    ids = np.array([[1, 2, 3, 4], [5, 4, 0, 0]], np.int32)
    lengths = np.array([4, 2], np.int32)
    model.decoder.stop.bias[...] = jnp.full((2,), -30.0)  # never stops: runs to max_steps
    gen = jax.device_get(model.generate(ids, lengths, max_steps=5))
    assert int(gen["steps"]) == 5
    np.testing.assert_array_equal(gen["lengths"], [10, 10])
    assert gen["mel"].shape == (2, 10, M) and gen["alignments"].shape == (2, 5, 4)
    np.testing.assert_allclose(gen["mel"], gen["mel_before"])  # no post-net
    # its own frames fed back by teacher forcing give the same frames and attention
    out, aux = _teacher_forcing(model)(ids, lengths, gen["mel_before"], gen["lengths"])
    np.testing.assert_allclose(out["mel"], gen["mel_before"], atol=1e-4)
    np.testing.assert_allclose(aux["alignments"], gen["alignments"], atol=1e-5)

    model.decoder.stop.bias[...] = jnp.array([-30.0, 30.0])  # the second frame says stop
    gen = jax.device_get(model.generate(ids, lengths, max_steps=5))
    assert int(gen["steps"]) == 1
    np.testing.assert_array_equal(gen["lengths"], [2, 2])
    assert np.all(gen["mel"][:, 2:] == 0.0) and np.any(gen["mel"][:, :2] != 0.0)


def test_scheduled_sampling_feeds_the_decoders_own_frames():
    """p = 1 with a key is free running over the true length (the frames `generate` makes);
    p = 0 with a key is plain teacher forcing; p in (0, 1) mixes the two; bad p is refused."""
    no_dropout = {"conv_dropout": 0.0, "prenet_dropout": 0.0, "postnet_dropout": 0.0}
    ids = np.array([[1, 2, 3, 4], [5, 4, 0, 0]], np.int32)
    lengths = np.array([4, 2], np.int32)
    mels = jax.random.normal(jax.random.key(0), (2, 10, M))
    mel_lengths = np.array([10, 7], np.int32)
    key = jax.random.key(3)

    def run(p):
        model = tts.Tacotron(
            _cfg(postnet_channels=0, scheduled_sampling=p, **no_dropout), M, C, rngs=nnx.Rngs(1)
        )
        out, _ = model(ids, lengths, mels=mels, mel_lengths=mel_lengths, key=key)
        return model, np.asarray(out["mel"])

    model, free = run(1.0)
    gen = jax.device_get(model.generate(ids, lengths, max_steps=5))
    np.testing.assert_allclose(free, gen["mel_before"], atol=1e-5)
    _, forced = run(0.0)
    np.testing.assert_allclose(
        forced, _teacher_forcing(model)(ids, lengths, mels, mel_lengths)[0]["mel"], atol=1e-5
    )
    _, mixed = run(0.5)
    # a decoder step is r = 2 frames; step 1 is fed a zero frame in all three
    first = [x.reshape(2, 5, 2, M)[:, 0] for x in (mixed, free, forced)]
    np.testing.assert_allclose(first[0], first[2], atol=1e-5)
    np.testing.assert_allclose(first[1], first[2], atol=1e-5)
    assert np.any(np.abs(mixed - free) > 1e-3) and np.any(np.abs(mixed - forced) > 1e-3)
    # without a key (evaluation) scheduled sampling is off
    model, _ = run(1.0)
    plain = _teacher_forcing(model)(ids, lengths, mels, mel_lengths)[0]["mel"]
    np.testing.assert_allclose(plain, forced, atol=1e-5)
    with pytest.raises(ValueError, match="model.scheduled_sampling must be a probability"):
        tts.Tacotron(_cfg(scheduled_sampling=1.5), M, C, rngs=nnx.Rngs(1))


def _test_signal(seconds=0.5):
    t = np.arange(int(seconds * SR)) / SR
    return (
        0.3 * np.sin(2 * np.pi * (200 * t + 600 * t**2))
        + 0.2 * np.sin(2 * np.pi * 1200 * t) * (t > 0.2)
    ).astype(np.float32)


def test_stft_is_the_features_transform_and_istft_inverts_it():
    x = _test_signal()
    frames = vocoder.Frames.from_features({"win_ms": 50.0, "hop_ms": 12.5, "n_fft": 1024})
    assert (frames.win, frames.hop, frames.n_fft) == (800, 200, 1024)
    spec = vocoder.stft(x, frames)
    fb = features.mel_matrix(SR, 1024, 40, 0.0)
    ours = np.log(np.abs(np.asarray(spec)) ** 2 @ fb + features.LOG_EPS)
    theirs, _ = features.log_mel(
        x[None], np.array([x.size]), n_mels=40, win_ms=50.0, hop_ms=12.5, n_fft=1024, fmin=0.0
    )
    np.testing.assert_allclose(ours, np.asarray(theirs)[0], atol=1e-4)
    y = np.asarray(vocoder.istft(spec, frames))
    assert y.size == frames.num_samples(spec.shape[0])
    inner = slice(frames.hop, y.size - frames.hop)  # the ends lie under one tapered window only
    np.testing.assert_allclose(y[inner], x[inner], atol=1e-5)


def test_griffin_lim_recovers_a_known_magnitude():
    x = _test_signal()
    frames = vocoder.Frames(800, 200, 1024)
    mag = np.abs(np.asarray(vocoder.stft(x, frames)))
    noise = np.random.default_rng(0).normal(size=x.size).astype(np.float32)
    assert vocoder.spectral_convergence(mag, 0.1 * noise, frames) > 0.9  # unrelated audio
    plain = vocoder.spectral_convergence(
        mag, vocoder.griffin_lim(mag, frames, n_iter=40, momentum=0.0), frames
    )
    fast = vocoder.spectral_convergence(mag, vocoder.griffin_lim(mag, frames, n_iter=40), frames)
    assert fast < 0.06 and fast < plain


def test_mel_cepstral_distortion_with_dtw():
    assert tts_bench.dtw(np.array([[1.0, 2.0], [3.0, 1.0]])) == (2.0, 2)
    assert tts_bench.dtw(np.array([[0.0, 0.0, 5.0], [5.0, 5.0, 0.0]])) == (0.0, 3)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 32)) - 5.0
    assert tts_bench.mcd_dtw(a, a) == 0.0
    assert tts_bench.mcd_dtw(a, np.repeat(a, 2, axis=0)) == pytest.approx(0.0, abs=1e-9)
    assert tts_bench.mcd_dtw(a, a + 3.0) == pytest.approx(0.0, abs=1e-9)  # c0 (level) left out
    # a log-amplitude ripple A cos(pi k (j + 1/2) / M) is cepstral coefficient k = A / 2, so its
    # MCD is 10 / ln 10 * sqrt(2) * A / 2 (the log-mel is the log of POWER: twice that ripple)
    amp, k = 0.3, 3
    ripple = 2 * amp * np.cos(np.pi * k * (np.arange(32) + 0.5) / 32)
    flat = np.tile(rng.normal(size=32), (10, 1))
    want = 10.0 / np.log(10.0) * np.sqrt(2.0) * amp / 2
    assert tts_bench.mcd_dtw(flat, flat + ripple) == pytest.approx(want, rel=1e-9)
    np.testing.assert_allclose(
        tts_bench.mel_cepstrum(ripple[None])[0, [k - 1, k, k + 1]], [0.0, amp / 2, 0.0], atol=1e-12
    )


# ----------------------------------------------------------------------------- a tiny run


def _tiny_config(steps=30):
    c = tts_config.get_config("lstm,runlocal")
    c.features.update({"n_mels": 12, "win_ms": 25.0, "hop_ms": 10.0, "n_fft": 512})
    c.model.update(
        {
            "hidden": 8,
            "embed": 8,
            "conv_channels": 8,
            "conv_layers": 2,
            "decoder_hidden": 16,
            "decoder_layers": 1,
            "prenet": (8, 8),
            "attention_dim": 8,
            "loc_filters": 3,
            "loc_width": 5,
            "reduction": 2,
            "postnet_channels": 8,
            "postnet_layers": 3,
            "conv_dropout": 0.0,
            "prenet_dropout": 0.0,
            "postnet_dropout": 0.0,
        }
    )
    c.synthesis.update({"max_seconds": 0.6, "griffin_lim_iters": 8})
    c.num_steps, c.eval_every, c.checkpoint_every, c.log_every = steps, steps, steps, 1
    c.optimizer.update({"learning_rate": 1e-2, "warmup_steps": 0, "schedule": "constant"})
    return c


@pytest.fixture(scope="module")
def tts_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("tts_run"))
    ds = tone_dataset("ctc")
    c = _tiny_config()
    c.checkpoint_every = 15  # checkpoints at steps 15 and 30 (two are kept)
    final = train.train_and_evaluate(c, workdir, wandb_mode="disabled", progress=False, dataset=ds)
    return workdir, ds, final


def test_training_lowers_the_loss_and_restores(tts_run):
    workdir, ds, final = tts_run
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        losses = [r["loss"] for r in map(json.loads, f) if r.get("split") == "train"]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:3])
    assert final["objective"] == "tts" and final["primary_metric"] == "mel_l1"
    synth = synthesis.load(workdir)
    assert synth.run.step == 30
    tf = tts_bench.teacher_forced(synth, ds, ds.splits["test"], batch_size=8)
    assert tf["mel_l1"] == pytest.approx(final["test_mel_l1"], rel=1e-5)
    assert tf["stop_accuracy"] == pytest.approx(final["test_stop_accuracy"], rel=1e-6)
    # the teacher-forced log-mels the bench vocodes are the ones that L1 is measured on: in
    # batches of 3 (other padding than the eval's), each cut to its reference's length
    split = ds.splits["test"]
    mels = tts_bench.teacher_forced_log_mels(synth, split, batch_size=3)
    refs = tts_bench.reference_log_mels(synth.config, split.audio)
    assert [m.shape for m in mels] == [r.shape for r in refs]
    l1 = sum(np.abs(m - r).sum() for m, r in zip(mels, refs)) / sum(r.size for r in refs)
    assert l1 == pytest.approx(tf["mel_l1"], rel=1e-4)


def test_synthesize_writes_the_wav_it_generated(tts_run, tmp_path):
    workdir, _, _ = tts_run
    synth = synthesis.load(workdir)
    audio, out = synthesis.synthesize(synth, ["ab", "Ba!"])
    frames = vocoder.Frames.from_features(synth.config.features)
    for x, n in zip(audio, out["lengths"]):
        assert x.shape == (frames.num_samples(int(n)),) and np.isfinite(x).all()
    path = str(tmp_path / "ab.wav")
    synthesis.write_wav(path, audio[0])
    back, rate = sf.read(path, dtype="int16")
    assert rate == 16000
    np.testing.assert_array_equal(back, to_int16(audio[0]))
    assert (
        synthesis.normalize_text("Set a timer for 25 minutes!")
        == "set a timer for twenty five minutes"
    )
    with pytest.raises(ValueError, match=r"characters \['é'\]"):
        synthesis.encode(synth, ["café"])


def test_bench_writes_json_markdown_and_pictures(tts_run, tmp_path):
    workdir, ds, final = tts_run
    out = str(tmp_path / "bench")
    result = tts_bench.bench(
        [workdir], out=out, num=4, batch_size=4, plots=1, datasets={workdir: ds}, command="test"
    )
    row = result["runs"][0]
    assert row["utterances_scored"] == 4 and len(row["utterances"]) == 4
    assert row["steps"] == 30 and row["num_params"] == final["num_params"]
    assert np.isfinite(row["mcd_dtw_db"]) and row["mcd_dtw_db"] > 0
    with open(f"{out}.json") as f:
        assert json.load(f)["runs"][0]["tf_mel_l1"] == pytest.approx(row["tf_mel_l1"])
    with open(f"{out}.md") as f:
        md = f.read()
    assert "| " + os.path.basename(workdir) + " | lstm | " in md
    assert "```\ntest\n```" in md and "No --asr_workdir" in md
    picture = f"{out}_{os.path.basename(workdir)}_0.png"
    assert result["pictures"] == [picture] and f"]({os.path.basename(picture)})" in md
    with open(picture, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # re-rendered from the JSON alone with a reproduce command: same numbers, new header
    again = tts_bench.render(f"{out}.json", commands=["step one"], reproduce_command="make it")
    assert again["runs"][0]["tf_mel_l1"] == row["tf_mel_l1"]
    with open(f"{out}.md") as f:
        md2 = f.read()
    assert "```\nmake it\n```" in md2 and "```\nstep one\n```" in md2
    assert md2.split("Provenance:")[1] == md.split("Provenance:")[1]
    with open(f"{out}.json") as f:
        assert json.load(f)["reproduce_command"] == "make it"
    with pytest.raises(ValueError, match="not a TTS table"):
        (tmp_path / "other.json").write_text('{"kind": "ctc_decoders"}')
        tts_bench.render(str(tmp_path / "other.json"))


def test_bench_scores_each_chosen_checkpoint(tts_run, tmp_path):
    workdir, ds, final = tts_run
    out = str(tmp_path / "bench")
    result = tts_bench.bench(
        [workdir], out=out, num=4, batch_size=4, plots=1, datasets={workdir: ds}, steps=[15, 30]
    )
    early, last = result["runs"]
    assert (early["step"], last["step"]) == (15, 30) and early["steps"] == last["steps"] == 30
    assert last["train_time_s"] == final["train_time_s"]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        at_15 = [r for r in map(json.loads, f) if r["step"] == 15 and r["split"] == "train"]
    assert early["train_time_s"] == at_15[0]["time_s"] < last["train_time_s"]
    assert early["tf_mel_l1"] != last["tf_mel_l1"]  # two different checkpoints were restored
    tag = os.path.basename(workdir)
    assert result["pictures"] == [f"{out}_{tag}_step15_0.png", f"{out}_{tag}_step30_0.png"]
    rows = [line for line in open(f"{out}.md") if line.startswith(f"| {tag} |")]
    assert [line.split(" | ")[3] for line in rows] == ["15", "30"]
    with pytest.raises(ValueError, match=r"no checkpoint of step 7; it has steps \[15, 30\]"):
        tts_bench.bench([workdir], out=out, num=2, plots=0, datasets={workdir: ds}, steps=[7])


def test_bench_scores_with_prenet_dropout_on_and_off(tts_run, tmp_path, monkeypatch):
    """--prenet_dropout=on,off: a row per setting, each generated as it says (the tiny run
    trained without dropout, so the restored prenet is given a rate of 0.5 here)."""
    workdir, ds, _ = tts_run
    load = synthesis.load

    def load_with_dropout(*args, **kwargs):
        synth = load(*args, **kwargs)
        synth.model.decoder.prenet.dropout = 0.5
        return synth

    monkeypatch.setattr(synthesis, "load", load_with_dropout)
    out = str(tmp_path / "bench")
    kw = dict(out=out, num=4, batch_size=4, plots=1, datasets={workdir: ds})
    on, off = tts_bench.bench([workdir], prenet_dropout=[True, False], **kw)["runs"]
    assert (on["prenet_dropout"], off["prenet_dropout"]) == (True, False)
    assert on["mcd_dtw_db"] != off["mcd_dtw_db"]  # dropout changed what was generated
    assert on["tf_mel_l1"] == off["tf_mel_l1"]  # teacher forcing never uses it
    tag = os.path.basename(workdir)
    rows = [line.split(" | ") for line in open(f"{out}.md") if line.startswith(f"| {tag} |")]
    assert [r[4] for r in rows] == ["yes", "no"] and "| prenet dropout |" in open(
        f"{out}.md"
    ).read()
    assert os.path.exists(f"{out}_{tag}_dropoutoff_0.png")
    # without the flag: the run's own setting (on by default), and no column
    (default,) = tts_bench.bench([workdir], **kw)["runs"]
    assert default["prenet_dropout"] is True and default["mcd_dtw_db"] == on["mcd_dtw_db"]
    assert "prenet dropout |" not in open(f"{out}.md").read()
    with pytest.raises(ValueError, match="--prenet_dropout: 'maybe' is neither"):
        tts_bench._on_off("maybe")


def test_judge_that_heard_the_tts_voice_is_refused(monkeypatch):
    """Intelligibility is scored by a recogniser that never heard the TTS voice: the judge's
    training speakers (voice variants) are checked against each TTS run's `voice` option."""
    import ml_collections

    from rnnbench import data as data_lib
    from rnnbench import input_pipeline

    train_split = data_lib.Split(
        [np.zeros(4, np.int16)] * 3, None, ["a", "b", "c"], ["m1", "f3", "m1"]
    )
    monkeypatch.setattr(
        input_pipeline,
        "load_dataset",
        lambda config: data_lib.Dataset("synth_phrases", "ctc", ["a"], {"train": train_split}),
    )
    judge_config = small_config("gru")
    judge_config.model.kind = "ctc"
    asr = inference.TrainedRun("runs/judge", judge_config, None, ["a"], 7, None, None)

    def tts_run(voice):
        return ml_collections.ConfigDict({"data": {"options": {"voice": voice}}})

    rec = tts_bench.judge_record(asr, [tts_run("en-us+m2")])
    assert rec["train_voices"] == 2 and rec["kind"] == "ctc" and rec["step"] == 7
    with pytest.raises(ValueError, match=r"--asr_workdir=runs/judge.*variant 'f3'.*'en\+f3'"):
        tts_bench.judge_record(asr, [tts_run("en-us+m2"), tts_run("en+f3")])
    # runs on no fixed voice (e.g. in-memory data): nothing to check, nothing loaded
    monkeypatch.setattr(input_pipeline, "load_dataset", None)
    assert "train_voices" not in tts_bench.judge_record(asr, [tts_run(None)])


@pytest.mark.slow
def test_bench_scores_intelligibility_with_a_recogniser(tts_run, tmp_path):
    workdir, ds, _ = tts_run
    asr_dir = str(tmp_path / "asr")
    c = small_config("lstm")
    c.model.kind = "ctc"
    c.model.frontend.channels = 0
    c.num_steps, c.eval_every, c.checkpoint_every = 30, 30, 30
    c.optimizer.learning_rate = 1e-2
    train.train_and_evaluate(c, asr_dir, wandb_mode="disabled", progress=False, dataset=ds)
    result = tts_bench.bench(
        [workdir],
        out=str(tmp_path / "b"),
        asr_workdir=asr_dir,
        num=8,
        batch_size=8,
        plots=0,
        datasets={workdir: ds},
    )
    row = result["runs"][0]
    asr = inference.load_run(asr_dir)
    split = tts_bench._subset(ds.splits["test"], 8)
    ref = inference.predict(asr, split.audio)
    assert [u["asr_reference"] for u in row["utterances"]] == ref
    synth = synthesis.load(workdir)
    tf = tts_bench.teacher_forced_log_mels(synth, split, batch_size=8)
    lengths = np.array([len(m) for m in tf])
    padded = np.stack([np.pad(m, ((0, lengths.max() - len(m)), (0, 0))) for m in tf])
    tf_hyp = tts_bench.asr_texts(asr, synthesis.to_audio(synth, padded, lengths), 8)
    assert [u["asr_tf"] for u in row["utterances"]] == tf_hyp
    assert row["cer_tf"] == pytest.approx(metrics.error_rates(split.transcripts, tf_hyp)["cer"])
    ref_cer = row["cer_reference"]
    assert row["cer_ratio"] == (pytest.approx(row["cer_synth"] / ref_cer) if ref_cer else None)
    assert row["within_2x"] == (row["cer_synth"] <= 2 * row["cer_reference"])


@pytest.mark.slow
def test_synthesize_cli(tts_run, tmp_path):
    workdir, _, _ = tts_run
    out = tmp_path / "a.wav"
    cmd = [
        sys.executable,
        "-m",
        "experiments.synthesize",
        f"--workdir={workdir}",
        "ab ba",
        f"--out={out}",
    ]
    r = subprocess.run(
        cmd,
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert r.returncode == 0, r.stderr
    x, rate = sf.read(out)
    assert rate == 16000 and x.size > 0
    assert r.stdout.startswith(f"{out}\t")
