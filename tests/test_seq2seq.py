"""Listen-attend-spell: masking, losses, CTC prefix scores, beam search, cells as decoders."""

import itertools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rnnbench import cells, seq2seq

C = 3  # characters 1..3; eos/sos 4; vocabulary 5


def _cfg(**kw):
    cfg = {
        "cell": "gru",
        "hidden": 16,
        "layers": 1,
        "bidirectional": False,
        "decoder_cell": "lstm",
        "decoder_hidden": 16,
        "embed": 8,
        "attention": "location",
        "attention_dim": 16,
        "loc_filters": 4,
        "loc_width": 5,
    }
    cfg.update(kw)
    return cfg


def _forward(model):
    """One jitted teacher-forced forward: (graphdef, state) split once, like a train step."""
    graph, state = nnx.split(model)

    @jax.jit
    def f(state, feats, lengths, labels, label_lengths):
        return nnx.merge(graph, state)(feats, lengths, labels=labels, label_lengths=label_lengths)

    return lambda *args: f(state, *args)


def test_id_layout_inputs_and_targets():
    assert seq2seq.vocab_size(28) == 30 and seq2seq.eos_id(28) == 29
    labels = jnp.array([[1, 2, 3], [2, 9, 9]])  # garbage after the second label length
    lengths = jnp.array([3, 1])
    np.testing.assert_array_equal(
        seq2seq.decoder_inputs(labels, lengths, 4), [[4, 1, 2, 3], [4, 2, 0, 0]]
    )
    np.testing.assert_array_equal(
        seq2seq.decoder_targets(labels, lengths, 4), [[1, 2, 3, 4], [2, 4, 0, 0]]
    )


def test_shapes_masking_padding_invariance_and_joint_loss():
    model = seq2seq.ListenAttendSpell(_cfg(bidirectional=True), 5, C, rngs=nnx.Rngs(0))
    fwd = _forward(model)
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(2, 11, 5)).astype(np.float32)
    lengths = np.array([11, 6], np.int32)
    labels = np.array([[1, 2, 3], [2, 0, 0]], np.int32)
    label_lengths = np.array([3, 1], np.int32)
    out = fwd(feats, lengths, labels, label_lengths)
    logits, aux = jax.tree.map(np.asarray, out)
    assert logits.shape == (2, 4, C + 2)
    assert aux["ctc_logits"].shape == (2, 11, C + 1)
    assert aux["alignments"].shape == (2, 4, 11) and aux["states"].shape == (2, 11, 32)
    np.testing.assert_array_equal(aux["lengths"], lengths)
    assert np.all(aux["alignments"][1, :, 6:] == 0.0)  # padded frames get exactly zero weight
    np.testing.assert_allclose(aux["alignments"].sum(-1), 1.0, atol=1e-5)
    assert np.all(logits[..., 0] == seq2seq.MASKED_LOGIT)  # id 0 is never emitted

    # more padding, filled with garbage, on both the frames and the labels: nothing changes
    feats2 = np.concatenate([feats, 100.0 * rng.normal(size=(2, 7, 5)).astype(np.float32)], 1)
    feats2[1, 6:11] = -50.0
    labels2 = np.concatenate([labels, np.full((2, 3), 3, np.int32)], 1)
    labels2[1, 1:3] = 1
    logits2, aux2 = jax.tree.map(np.asarray, fwd(feats2, lengths, labels2, label_lengths))
    assert logits2.shape == (2, 7, C + 2) and aux2["alignments"].shape == (2, 7, 18)
    for b in range(2):
        n_out, n_in = label_lengths[b] + 1, lengths[b]
        np.testing.assert_allclose(logits2[b, :n_out], logits[b, :n_out], atol=2e-5)
        np.testing.assert_allclose(
            aux2["alignments"][b, :n_out, :n_in], aux["alignments"][b, :n_out, :n_in], atol=1e-6
        )
        np.testing.assert_allclose(
            aux2["ctc_logits"][b, :n_in], aux["ctc_logits"][b, :n_in], atol=2e-5
        )
        assert np.all(aux2["alignments"][b, :, n_in:] == 0.0)

    @jax.jit
    def losses(logits, aux):
        joint = seq2seq.joint_loss(logits, aux, labels, label_lengths, ctc_weight=0.3)
        ctc = optax.ctc_loss(aux["ctc_logits"], _pad(11, lengths), labels, _pad(3, label_lengths))
        return joint, ctc, seq2seq.seq2seq_loss(logits, labels, label_lengths)

    (loss, parts), ctc, att = jax.tree.map(np.asarray, losses(*out))
    np.testing.assert_allclose(parts["ctc"], ctc / label_lengths, rtol=1e-5)
    np.testing.assert_allclose(parts["attention"], att, rtol=1e-6)
    np.testing.assert_allclose(loss, 0.3 * parts["ctc"] + 0.7 * parts["attention"], rtol=1e-6)
    np.testing.assert_array_equal(parts["tokens"], [4, 2])
    with pytest.raises(ValueError, match="ctc_weight"):
        seq2seq.joint_loss(*out, labels, label_lengths, ctc_weight=1.5)


def test_seq2seq_loss_matches_manual_label_smoothing_and_ignores_padding():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(2, 4, C + 2)), jnp.float32).at[..., 0].set(-1e9)
    labels = jnp.array([[1, 2, 3], [3, 0, 0]])
    lengths = jnp.array([3, 1])
    eps = 0.1
    logp = np.asarray(jax.nn.log_softmax(logits, -1))
    targets = [[1, 2, 3, 4], [3, 4]]
    want = [
        np.mean([-(1 - eps) * logp[b, j, y] - eps * logp[b, j, 1:].mean() for j, y in enumerate(t)])
        for b, t in enumerate(targets)
    ]
    got = seq2seq.seq2seq_loss(logits, labels, lengths, eps)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    changed = logits.at[1, 2:].set(30.0)  # steps after eos are not scored
    np.testing.assert_allclose(seq2seq.seq2seq_loss(changed, labels, lengths, eps), got, rtol=1e-6)
    with pytest.raises(ValueError, match="label_smoothing"):
        seq2seq.seq2seq_loss(logits, labels, lengths, 1.0)


def test_memorises_two_utterances_and_greedy_decoding_reproduces_them():
    model = seq2seq.ListenAttendSpell(_cfg(), 5, C, rngs=nnx.Rngs(0))
    feats = jax.random.normal(jax.random.key(5), (2, 10, 5))
    lengths = jnp.array([10, 8])
    labels = jnp.array([[1, 2, 2, 3], [3, 1, 0, 0]])
    label_lengths = jnp.array([4, 2])
    graph, params = nnx.split(model)
    tx = optax.adam(1e-2)

    def loss_fn(params):
        m = nnx.merge(graph, params)
        logits, _ = m(feats, lengths, labels=labels, label_lengths=label_lengths)
        return seq2seq.seq2seq_loss(logits, labels, label_lengths).mean()

    @jax.jit
    def train_step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def greedy(params):  # beam_search inside the caller's jit, as an eval step calls it
        m = nnx.merge(graph, params)
        logits, _ = m(feats, lengths, labels=labels, label_lengths=label_lengths)
        log_p = -seq2seq.seq2seq_loss(logits, labels, label_lengths) * (label_lengths + 1)
        return seq2seq.beam_search(m, feats, lengths, beam=1, max_len=6), log_p

    opt_state = tx.init(params)
    losses = []
    for _ in range(60):
        params, opt_state, loss = train_step(params, opt_state)
        losses.append(float(loss))
    assert losses[-1] < 0.05 * losses[0], losses[::10]
    (ids, out_lengths, scores), log_p = greedy(params)
    np.testing.assert_array_equal(out_lengths, label_lengths)
    np.testing.assert_array_equal(ids[:, :4], labels)
    assert np.all(np.asarray(ids)[:, 4:] == 0)
    # the greedy score is the log-probability of the target, and (memorised) close to 0
    np.testing.assert_allclose(scores, log_p, rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(scores) > -0.5)


def _collapse(path):
    out, prev = [], 0
    for s in path:
        if s != 0 and s != prev:
            out.append(s)
        prev = s
    return tuple(out)


def _ctc_label_probs(log_probs, length):
    """Brute force: probability of every labelling, summing over all length^L CTC paths."""
    p = np.exp(np.asarray(log_probs, np.float64))[:length]
    probs = {}
    for path in itertools.product(range(p.shape[1]), repeat=length):
        y = _collapse(path)
        probs[y] = probs.get(y, 0.0) + math.prod(p[t, s] for t, s in enumerate(path))
    return probs


def _log(x):
    return math.log(x) if x > 0 else -math.inf


def test_ctc_prefix_score_matches_brute_force():
    rng = np.random.default_rng(1)
    labels = 3  # blank + 2 characters
    lp = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(2, 5, labels)) * 2.0, jnp.float32), -1)
    lengths = jnp.array([5, 3])  # the second utterance has 2 padded frames
    score = jax.jit(seq2seq.ctc_prefix_score)
    brute = [_ctc_label_probs(lp[b], int(lengths[b])) for b in range(2)]
    prefixes = [()] + [p for n in (1, 2, 3) for p in itertools.product((1, 2), repeat=n)]
    for g in prefixes:
        r, last = seq2seq.ctc_prefix_init(lp), jnp.zeros((2,), jnp.int32)
        for tok in g:
            scores, r_next = score(lp, lengths, r, last)
            r, last = r_next[:, :, :, tok], jnp.full((2,), tok, jnp.int32)
        scores, _ = score(lp, lengths, r, last)
        assert scores.shape == (2, labels + 1)
        for b in range(2):
            want = [-math.inf]
            for c in (1, 2):
                h = g + (c,)
                want.append(_log(sum(v for y, v in brute[b].items() if y[: len(h)] == h)))
            want.append(_log(brute[b].get(g, 0.0)))  # eos: exactly g
            np.testing.assert_allclose(
                np.asarray(scores[b]),
                want,
                rtol=1e-4,
                atol=1e-5,
                err_msg=f"prefix {g} utterance {b}",
            )


@pytest.fixture(scope="module")
def tiny():
    """A random 2-character model, 2 utterances, and the exhaustive scores of all 15 outputs of
    length <= 3: attention log p(y, eos) and CTC log p(y)."""
    num_classes, max_len = 2, 3
    model = seq2seq.ListenAttendSpell(_cfg(), 5, num_classes, rngs=nnx.Rngs(7))
    feats = np.random.default_rng(3).normal(size=(2, 7, 5)).astype(np.float32)
    lengths = np.array([7, 5], np.int32)
    hyps = [h for n in range(max_len + 1) for h in itertools.product((1, 2), repeat=n)]
    labels = np.zeros((len(hyps), max_len), np.int32)
    for i, h in enumerate(hyps):
        labels[i, : len(h)] = h
    label_lengths = np.array([len(h) for h in hyps] * 2, np.int32)
    labels = np.concatenate([labels, labels])  # every output for utterance 0, then 1
    graph, params = nnx.split(model)

    @jax.jit
    def exhaustive(params):
        f, l = jnp.repeat(feats, len(hyps), 0), jnp.repeat(lengths, len(hyps), 0)
        logits, aux = nnx.merge(graph, params)(f, l, labels=labels, label_lengths=label_lengths)
        att = -seq2seq.seq2seq_loss(logits, labels, label_lengths) * (label_lengths + 1)
        ctc = -optax.ctc_loss(aux["ctc_logits"], _pad(7, l), labels, _pad(max_len, label_lengths))
        return att.reshape(2, -1), ctc.reshape(2, -1)

    att, ctc = exhaustive(params)
    return {
        "model": model,
        "feats": feats,
        "lengths": lengths,
        "hyps": hyps,
        "max_len": max_len,
        "att": np.asarray(att),
        "ctc": np.asarray(ctc),
        "n": label_lengths[: len(hyps)],
    }


def _pad(n, lengths):
    """1.0 at steps >= lengths: [batch, n] (optax's paddings)."""
    return (jnp.arange(n)[None, :] >= lengths[:, None]).astype(jnp.float32)


def _check_against_exhaustive(tiny, out, ctc_weight, bonus, exact):
    ids, lens, scores = (np.asarray(x) for x in out)
    want = (1 - ctc_weight) * tiny["att"] + ctc_weight * tiny["ctc"] + bonus * tiny["n"]
    for b in range(2):
        finite = np.isfinite(scores[b])
        assert np.all(np.diff(scores[b][finite]) <= 1e-6)  # best first
        seen = set()
        for k in np.flatnonzero(finite):  # every hypothesis carries its exact total score
            h = tuple(ids[b, k, : lens[b, k]])
            assert np.all(ids[b, k, lens[b, k] :] == 0) and h not in seen
            seen.add(h)
            np.testing.assert_allclose(
                scores[b, k], want[b, tiny["hyps"].index(h)], rtol=1e-4, atol=1e-4
            )
        if exact:  # beam >= number of outputs: the n-best list is the sorted exhaustive list
            assert finite.sum() == len(tiny["hyps"])
            np.testing.assert_allclose(
                scores[b][finite], np.sort(want[b])[::-1], rtol=1e-4, atol=1e-4
            )
        else:
            assert scores[b, 0] <= want[b].max() + 1e-4


@pytest.mark.parametrize("ctc_weight,bonus", [(0.0, 0.0), (0.5, 0.7)])
def test_beam_search_matches_exhaustive_enumeration(tiny, ctc_weight, bonus):
    out = seq2seq.beam_search(
        tiny["model"],
        tiny["feats"],
        tiny["lengths"],
        beam=16,
        max_len=tiny["max_len"],
        ctc_weight=ctc_weight,
        length_bonus=bonus,
        nbest=True,
    )
    _check_against_exhaustive(tiny, out, ctc_weight, bonus, exact=True)
    best = seq2seq.beam_search(
        tiny["model"],
        tiny["feats"],
        tiny["lengths"],
        beam=16,
        max_len=tiny["max_len"],
        ctc_weight=ctc_weight,
        length_bonus=bonus,
    )
    for x, y in zip(best, out):
        np.testing.assert_array_equal(x, y[:, 0])


def test_small_beam_keeps_exact_scores(tiny):
    out = seq2seq.beam_search(
        tiny["model"],
        tiny["feats"],
        tiny["lengths"],
        beam=3,
        max_len=tiny["max_len"],
        ctc_weight=0.3,
        nbest=True,
    )
    assert out[0].shape == (2, 3, tiny["max_len"])
    _check_against_exhaustive(tiny, out, 0.3, 0.0, exact=False)


def test_joint_search_with_zero_ctc_weight_changes_nothing(tiny):
    args = (tiny["model"], tiny["feats"], tiny["lengths"], jnp.float32(0.0), jnp.float32(0.0))
    kw = {"beam": 16, "max_len": tiny["max_len"]}
    joint = seq2seq._search(*args, joint=True, **kw)  # CTC prefix scorer on, weight 0
    plain = seq2seq._search(*args, joint=False, **kw)
    for x, y in zip(joint, plain):
        np.testing.assert_array_equal(x, y)


def _decoder_check(name):
    """Teacher forcing (one scan) equals the decoder stepped by hand, and the decoder's cell
    gets gradient, for decoder cell `name`."""
    model = seq2seq.ListenAttendSpell(
        _cfg(
            bidirectional=False,
            decoder_cell=name,
            attention="content" if name == "gru" else "location",
        ),
        5,
        C,
        rngs=nnx.Rngs(1),
    )
    graph, params = nnx.split(model)
    feats = jax.random.normal(jax.random.key(4), (2, 6, 5))
    lengths, labels, label_lengths = (
        jnp.array([6, 4]),
        jnp.array([[1, 3], [2, 0]]),
        jnp.array([2, 1]),
    )

    @jax.jit
    def run(params):
        def loss(params):
            m = nnx.merge(graph, params)
            logits, aux = m(feats, lengths, labels=labels, label_lengths=label_lengths)
            memory = m.decoder.memory(aux["states"], aux["lengths"])
            state = m.decoder.initial_state(memory)
            inputs = seq2seq.decoder_inputs(labels, label_lengths, m.eos)
            stepped = []
            for i in range(inputs.shape[1]):
                state, step_logits, _ = m.decoder.step(state, inputs[:, i], memory)
                stepped.append(step_logits)
            value = seq2seq.seq2seq_loss(logits, labels, label_lengths).mean()
            return value, (logits, jnp.stack(stepped, 1))

        return jax.value_and_grad(loss, has_aux=True)(params)

    (value, (logits, stepped)), grads = run(params)
    assert logits.shape == (2, 3, C + 2) and np.isfinite(value)
    np.testing.assert_allclose(logits, stepped, atol=1e-5)
    g = jax.tree.leaves(grads["decoder"]["cell"])
    assert g and all(np.all(np.isfinite(x)) for x in g)
    assert sum(float(jnp.abs(x).sum()) for x in g) > 0.0


@pytest.mark.parametrize("name", ["lstm", "gru", "mingru"])
def test_cell_as_decoder(name):
    _decoder_check(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(cells.CELLS) - {"lstm", "gru", "mingru"}))
def test_every_registered_cell_as_decoder(name):
    _decoder_check(name)


@pytest.mark.parametrize("width", [1, 4, 5, 31])
def test_location_term_is_the_conv_and_its_projection(width):
    """The one-matmul location term equals nnx.Conv('SAME') then the projection, at odd and even
    widths, on utterances shorter than the kernel too."""
    att = seq2seq.LocationAwareAttention(6, 5, 7, filters=3, width=width, rngs=nnx.Rngs(1))
    for t in (3, 12):
        prev = jax.random.uniform(jax.random.key(t), (2, t))
        want = att.location_proj(att.conv(prev[..., None]))
        got = att.location_term(prev)
        assert got.shape == (2, t, 7)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="model.attention"):
        seq2seq.ListenAttendSpell(_cfg(attention="dot"), 5, C, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown cell name"):
        seq2seq.ListenAttendSpell(_cfg(decoder_cell="nope"), 5, C, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="loc_width"):
        seq2seq.ListenAttendSpell(_cfg(loc_width=0), 5, C, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="beam"):
        seq2seq.beam_search(None, None, None, beam=0, max_len=4)


def test_plot_alignment_writes_png_atomically(tmp_path):
    a = np.asarray(jax.nn.softmax(jax.random.normal(jax.random.key(0), (4, 12)), -1))
    path = tmp_path / "plots" / "align.png"
    seq2seq.plot_alignment(a, str(path), "utt 0", tokens=list("abc") + ["<eos>"], frames=10)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(path.parent) == ["align.png"]  # no temp file left behind
    with pytest.raises(ValueError, match="tokens"):
        seq2seq.plot_alignment(a, str(path), tokens=["a"])


@pytest.mark.parametrize("kind", ["las", "transducer"])
def test_asr_config_decoder_fields_reach_the_model(kind):
    """experiments/configs/asr.py names every decoder field; its defaults build the model the
    bare defaults build, and an override (e.g. --config.model.loc_width) reaches it."""
    from experiments.configs import asr
    from rnnbench import models

    c = asr.get_config("las_gru_digits" if kind == "las" else "transducer_gru_digits")
    c.model.hidden = 8
    full = c.model.to_dict()
    bare = {k: v for k, v in full.items() if k not in asr.DECODER_FIELDS}

    def shapes(cfg):
        m = models.build(cfg, num_features=4, num_classes=C, rngs=nnx.Rngs(0))
        return jax.tree.map(jnp.shape, nnx.state(m, nnx.Param))

    assert shapes(full) == shapes(bare)
    if kind == "las":
        m = models.build(dict(full, loc_width=7), num_features=4, num_classes=C, rngs=nnx.Rngs(0))
        assert m.decoder.attention.conv.kernel.shape == (7, 1, full["loc_filters"])
    else:
        m = models.build(dict(full, joint_dim=5), num_features=4, num_classes=C, rngs=nnx.Rngs(0))
        assert m.joint.out.kernel.shape == (5, C + 1)
