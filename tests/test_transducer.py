"""RNN transducer: the loss against brute-force enumeration of alignments (value and gradient),
the model, and greedy / beam decoding against known answers and exhaustive search."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rnnbench import transducer
from rnnbench.transducer import rnnt_loss


def _compositions(total: int, parts: int, cap: int):
    """Per-frame label counts (c_0 .. c_{parts-1}), each <= cap, summing to total."""
    return [
        c for c in itertools.product(range(min(total, cap) + 1), repeat=parts) if sum(c) == total
    ]


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def _alignments(labels, counts, blank=0):
    """Each alignment as its (t, u, k) moves: frame t emits counts[t] labels, then a blank."""
    out = []
    for c in counts:
        moves, u = [], 0
        for t, n in enumerate(c):
            for _ in range(n):
                moves.append((t, u, labels[u]))
                u += 1
            moves.append((t, u, blank))
        out.append(moves)
    return out


def _brute_log_prob(logp, labels, counts, blank=0):
    """log sum over the given alignments (float64); -inf when there are none."""
    scores = [sum(logp[m] for m in a) for a in _alignments(labels, counts, blank)]
    return np.logaddexp.reduce(scores) if scores else -np.inf


def _brute_nll_and_grad(logits, labels, blank=0):
    """-log P(labels) over ALL alignments of one sequence, logits [T, U+1, V], and its gradient
    d/dlogits = softmax * occupancy - occupancy per (t, u, k), by enumeration."""
    logp = _log_softmax(logits)
    t, u = logits.shape[0], len(labels)
    aligns = _alignments(labels, _compositions(u, t, u), blank)
    scores = np.array([sum(logp[m] for m in a) for a in aligns])
    log_z = np.logaddexp.reduce(scores)
    occ = np.zeros_like(logp)
    for a, s in zip(aligns, scores):
        for m in a:
            occ[m] += np.exp(s - log_z)
    return -log_z, np.exp(logp) * occ.sum(-1, keepdims=True) - occ


def _padded_batch(rng, blank=0):
    """3 sequences of (frames, labels) = (3, 2), (2, 1), (1, 0) in a [3, 3, 3, 3] batch, NaN
    logits and -1 labels in the padding."""
    t_max, u_max, v = 3, 2, 3
    lengths, label_lengths = np.array([3, 2, 1]), np.array([2, 1, 0])
    non_blank = [i for i in range(v) if i != blank]
    labels = np.full((3, u_max), -1)
    labels[0] = [non_blank[1], non_blank[0]]
    labels[1, 0] = non_blank[1]
    logits = rng.normal(size=(3, t_max, u_max + 1, v)) * 2.0
    for i in range(3):
        logits[i, lengths[i] :] = np.nan
        logits[i, :, label_lengths[i] + 1 :] = np.nan
    return (
        jnp.asarray(logits, jnp.float32),
        jnp.asarray(lengths),
        jnp.asarray(labels),
        jnp.asarray(label_lengths),
    )


@pytest.mark.parametrize("blank", [0, 2])
def test_loss_value_and_gradient_match_brute_force_with_padding(blank):
    logits, lengths, labels, label_lengths = _padded_batch(np.random.default_rng(0), blank)
    loss, grad = jax.value_and_grad(
        lambda x: rnnt_loss(x, lengths, labels, label_lengths, blank).sum()
    )(logits)
    per_seq = rnnt_loss(logits, lengths, labels, label_lengths, blank)
    assert bool(jnp.all(jnp.isfinite(grad)))
    for i in range(3):
        t, u = int(lengths[i]), int(label_lengths[i])
        lab = [int(y) for y in labels[i, :u]]
        valid = logits[i, :t, : u + 1]
        want, want_grad = _brute_nll_and_grad(valid, lab, blank)
        np.testing.assert_allclose(per_seq[i], want, rtol=1e-5)
        np.testing.assert_allclose(grad[i, :t, : u + 1], want_grad, atol=2e-6)
        # padding: exactly zero gradient, even though those logits are NaN
        pad = np.ones(grad.shape[1:], bool)
        pad[:t, : u + 1] = False
        assert np.all(np.asarray(grad[i])[pad] == 0.0)
    np.testing.assert_allclose(loss, per_seq.sum(), rtol=1e-6)


def test_loss_without_labels_is_the_all_blank_path():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(2, 3, 1, 4)), jnp.float32)
    lengths = jnp.array([3, 2])
    labels, label_lengths = jnp.zeros((2, 0), jnp.int32), jnp.zeros((2,), jnp.int32)
    loss, grad = jax.value_and_grad(lambda x: rnnt_loss(x, lengths, labels, label_lengths).sum())(
        logits
    )
    blank_lp = np.asarray(jax.nn.log_softmax(logits, -1)[..., 0, 0])  # [2, 3]
    want = [-blank_lp[0].sum(), -blank_lp[1, :2].sum()]
    np.testing.assert_allclose(rnnt_loss(logits, lengths, labels, label_lengths), want, rtol=1e-6)
    np.testing.assert_allclose(loss, sum(want), rtol=1e-6)
    # d(-log softmax_0)/dlogits = softmax - onehot(0) on valid frames, 0 on the padded one
    p = np.asarray(jax.nn.softmax(logits, -1))[:, :, 0]
    want_grad = p - np.eye(4)[0]
    want_grad[1, 2] = 0.0
    np.testing.assert_allclose(grad[:, :, 0], want_grad, atol=1e-6)


def _alpha_beta_nll_and_grad(logits, labels, blank=0):
    """Textbook float64 forward-backward over the (T, U) lattice (Graves 2012, eqs. 9-20):
    -log P(labels) and its gradient with respect to the logits, one sequence."""
    logp = _log_softmax(logits)
    t_max, u1 = logp.shape[:2]
    alpha, beta = np.full((t_max, u1), -np.inf), np.full((t_max, u1), -np.inf)
    for t in range(t_max):
        for u in range(u1):
            a = alpha[t - 1, u] + logp[t - 1, u, blank] if t else -np.inf
            b = alpha[t, u - 1] + logp[t, u - 1, labels[u - 1]] if u else -np.inf
            alpha[t, u] = 0.0 if t == u == 0 else np.logaddexp(a, b)
    for t in reversed(range(t_max)):
        for u in reversed(range(u1)):
            a = beta[t + 1, u] if t + 1 < t_max else (0.0 if u == u1 - 1 else -np.inf)
            b = logp[t, u, labels[u]] + beta[t, u + 1] if u + 1 < u1 else -np.inf
            beta[t, u] = np.logaddexp(logp[t, u, blank] + a, b)
    log_z = beta[0, 0]
    occ = np.zeros_like(logp)
    for t in range(t_max):
        for u in range(u1):
            nxt = beta[t + 1, u] if t + 1 < t_max else (0.0 if u == u1 - 1 else -np.inf)
            occ[t, u, blank] += np.exp(alpha[t, u] + logp[t, u, blank] + nxt - log_z)
            if u + 1 < u1:
                k = labels[u]
                occ[t, u, k] += np.exp(alpha[t, u] + logp[t, u, k] + beta[t, u + 1] - log_z)
    np.testing.assert_allclose(alpha[-1, -1] + logp[-1, -1, blank], log_z, rtol=1e-12)
    return -log_z, np.exp(logp) * occ.sum(-1, keepdims=True) - occ


def test_loss_matches_float64_forward_backward_on_longer_sharp_sequences():
    rng = np.random.default_rng(2)
    t, u, v = 40, 12, 6
    logits = rng.normal(size=(1, t, u + 1, v)) * 8.0  # peaked distributions
    labels = rng.integers(1, v, size=(1, u))
    loss, grad = jax.value_and_grad(
        lambda x: rnnt_loss(x, jnp.array([t]), jnp.asarray(labels), jnp.array([u])).sum()
    )(jnp.asarray(logits, jnp.float32))
    want, want_grad = _alpha_beta_nll_and_grad(logits[0], labels[0])
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_allclose(grad[0], want_grad, atol=1e-4)


def test_loss_under_jit_and_vmap_matches_eager():
    logits, lengths, labels, label_lengths = _padded_batch(np.random.default_rng(3))
    fn = jax.value_and_grad(lambda x, a, b, c: rnnt_loss(x, a, b, c).sum())
    want, want_grad = fn(logits, lengths, labels, label_lengths)
    loss, grad = jax.jit(fn)(logits, lengths, labels, label_lengths)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    np.testing.assert_allclose(grad, want_grad, atol=1e-7)
    # a leading model axis, as the training loop's vmapped seeds have
    stacked = jnp.stack([logits, 2.0 * logits])
    losses, grads = jax.jit(jax.vmap(fn, in_axes=(0, None, None, None)))(
        stacked, lengths, labels, label_lengths
    )
    np.testing.assert_allclose(losses[0], want, rtol=1e-6)
    np.testing.assert_allclose(grads[0], want_grad, atol=1e-7)
    want2, want_grad2 = fn(2.0 * logits, lengths, labels, label_lengths)
    np.testing.assert_allclose(losses[1], want2, rtol=1e-6)
    np.testing.assert_allclose(grads[1], want_grad2, atol=1e-7)


def test_loss_of_a_sequence_without_frames_under_jit_is_inf_with_zero_gradient():
    logits, lengths, labels, label_lengths = _padded_batch(np.random.default_rng(5))
    logits = jnp.nan_to_num(logits)
    lengths = lengths.at[1].set(0)  # only possible under jit: concrete lengths are checked
    per_seq, vjp = jax.vjp(lambda x: jax.jit(rnnt_loss)(x, lengths, labels, label_lengths), logits)
    (grad,) = vjp(jnp.ones(3))
    per_seq = np.asarray(per_seq)
    assert np.isinf(per_seq[1]) and np.all(np.isfinite(per_seq[[0, 2]]))
    assert np.all(grad[1] == 0.0) and bool(jnp.all(jnp.isfinite(grad)))
    np.testing.assert_allclose(
        per_seq[[0, 2]],
        rnnt_loss(logits[::2], lengths[::2], labels[::2], label_lengths[::2]),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "change, name",
    [
        (lambda a: {**a, "joint_logits": a["joint_logits"][0]}, "joint_logits"),
        (lambda a: {**a, "labels": a["labels"][:, :1]}, "labels"),
        (lambda a: {**a, "logit_lengths": a["logit_lengths"][:2]}, "logit_lengths"),
        (lambda a: {**a, "label_lengths": a["label_lengths"][None]}, "label_lengths"),
        (lambda a: {**a, "logit_lengths": jnp.array([4, 2, 1])}, "logit_lengths"),
        (lambda a: {**a, "logit_lengths": jnp.array([3, 0, 1])}, "logit_lengths"),
        (lambda a: {**a, "label_lengths": jnp.array([3, 1, 0])}, "label_lengths"),
        (lambda a: {**a, "labels": jnp.array([[1, 0], [2, 0], [0, 0]])}, "labels"),
        (lambda a: {**a, "labels": jnp.array([[1, 3], [2, 0], [0, 0]])}, "labels"),
        (lambda a: {**a, "blank_id": 3}, "blank_id"),
    ],
)
def test_loss_bad_input_raises_naming_the_argument(change, name):
    logits, lengths, labels, label_lengths = _padded_batch(np.random.default_rng(4))
    args = {
        "joint_logits": logits,
        "logit_lengths": lengths,
        "labels": labels,
        "label_lengths": label_lengths,
    }
    with pytest.raises(ValueError, match=name):
        rnnt_loss(**change(args))


# --- the model ---------------------------------------------------------------------------------
# Model calls go through nnx.jit: one compilation per shape instead of one per operation.

_forward = nnx.jit(lambda model, feats, lengths, labels: model(feats, lengths, labels=labels))
_greedy = nnx.jit(transducer.greedy_decode, static_argnames="max_symbols_per_step")
_beam = nnx.jit(transducer.beam_decode, static_argnames=("beam", "max_symbols_per_step"))


@nnx.jit(static_argnames=("beam", "max_symbols_per_step"))
def _beam_search(model, feats, lengths, *, beam, max_symbols_per_step):
    enc, enc_lengths = model.encoder(feats, lengths)
    return transducer.beam_search(
        model.prediction,
        model.joint,
        enc,
        enc_lengths,
        beam=beam,
        max_symbols_per_step=max_symbols_per_step,
    )


def _model(seed=0, num_classes=2, cell="lstm", sharpen=4.0, **extra):
    cfg = {
        "kind": "transducer",
        "cell": cell,
        "hidden": 8,
        "layers": 1,
        "bidirectional": False,
        "pred_hidden": 6,
        "pred_embed": 5,
        "joint_dim": 7,
        **extra,
    }
    model = transducer.Transducer(cfg, num_features=3, num_classes=num_classes, rngs=nnx.Rngs(seed))
    model.joint.out.kernel[...] = model.joint.out.kernel[...] * sharpen  # less uniform outputs
    return model


def _feats(seed, batch, time):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, time, 3)), jnp.float32)


@pytest.mark.parametrize("cell, layers", [("lstm", 2), ("gru", 1), ("mingru", 1), ("lru", 2)])
def test_prediction_network_steps_match_the_sequence_call(cell, layers):
    net = transducer.PredictionNetwork(4, 5, 6, cell, layers, rngs=nnx.Rngs(0))
    labels = jnp.array([[3, 1, 4], [2, 2, 1]])

    @nnx.jit
    def both(net, labels):
        state, out = net.step(net.initial_state(2), jnp.zeros((2,), jnp.int32))
        outs = [out]
        for u in range(3):
            state, out = net.step(state, labels[:, u])
            outs.append(out)
        return net(labels), jnp.stack(outs, 1)

    full, stepped = both(net, labels)
    assert full.shape == (2, 4, 6)
    np.testing.assert_allclose(stepped, full, atol=1e-5)


def test_transducer_forward_shapes_loss_and_gradient():
    model = _model(
        frontend={"channels": 4, "kernel": 3, "stride": 2}, pred_cell="gru", pred_layers=2
    )
    feats, lengths = _feats(0, 2, 7), jnp.array([7, 4])
    labels, label_lengths = jnp.array([[1, 2, 2], [2, 0, 0]]), jnp.array([3, 1])
    graphdef, params = nnx.split(model, nnx.Param)

    def loss_fn(params):
        lg, ax = nnx.merge(graphdef, params)(feats, lengths, labels=labels, key=jax.random.key(0))
        return rnnt_loss(lg, ax["lengths"], labels, label_lengths).mean(), (lg, ax)

    (loss, (logits, aux)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    assert logits.shape == (2, 4, 4, 3)  # [B, ceil(7 / 2), U + 1, classes + 1]
    np.testing.assert_array_equal(aux["lengths"], [4, 2])
    assert aux["states"].shape == (2, 4, 8)
    norms = [float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)]
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert all(np.isfinite(norms)) and min(norms) > 0  # every parameter gets a gradient
    with pytest.raises(ValueError, match="labels"):
        model(feats, lengths, labels=labels[0])


# --- decoding ----------------------------------------------------------------------------------


class _CountingPrediction:
    """Fake prediction network whose output is one_hot(number of labels so far)."""

    def __init__(self, size):
        self.size = size

    def initial_state(self, n):
        return jnp.full((n,), -1, jnp.int32)  # the start symbol takes it to 0

    def step(self, state, labels):
        state = state + 1
        return state, jax.nn.one_hot(state, self.size)


class _TableJoint:
    """Fake joint: logits = table[t, u] for encoder state one_hot(t), prediction one_hot(u)."""

    def __init__(self, table):
        self.table = jnp.asarray(table, jnp.float32)  # [T, U, V]

    def project_encoder(self, e):
        return e

    def project_prediction(self, p):
        return p

    def logits(self, e, p):
        per_u = (e[..., :, None, None] * self.table).sum(-3)  # [..., U, V]
        return (p[..., :, None] * per_u).sum(-2)


def test_greedy_search_known_answer_with_symbol_cap_and_padding():
    t_max, u_max, v = 4, 8, 4
    table = np.zeros((t_max, u_max, v))
    table[:, :, 0] = 1.0  # blank unless set below
    for t, u, k in [
        (0, 0, 3),
        (0, 1, 1),
        (0, 2, 2),  # (0, 2) is past the cap of 2: not used
        (2, 2, 2),
        (3, 3, 3),
        (3, 4, 3),
    ]:
        table[t, u, k] = 5.0
    enc = jnp.broadcast_to(jnp.eye(t_max), (2, t_max, t_max))
    search = jax.jit(
        lambda enc, lengths: transducer.greedy_search(
            _CountingPrediction(u_max), _TableJoint(table), enc, lengths, max_symbols_per_step=2
        )
    )
    tokens, lengths = search(enc, jnp.array([4, 2]))
    assert tokens.shape == (2, 8)
    np.testing.assert_array_equal(lengths, [5, 2])
    np.testing.assert_array_equal(tokens[0], [3, 1, 2, 3, 3, 0, 0, 0])
    np.testing.assert_array_equal(tokens[1], [3, 1, 0, 0, 0, 0, 0, 0])


def test_greedy_decode_follows_the_argmax_of_the_training_lattice():
    """Each decision of greedy decoding on a real model is the argmax of the lattice the
    training forward computes for the decoded labels (step mode == sequence mode)."""
    model, m = _model(seed=1, num_classes=3, sharpen=6.0), 2
    feats, lengths = _feats(1, 3, 6), jnp.array([6, 3, 5])
    tokens, n = _greedy(model, feats, lengths, max_symbols_per_step=m)
    assert int(n.sum()) > 0
    logits, aux = _forward(model, feats, lengths, tokens)
    for i in range(3):
        y, u = tokens[i, : int(n[i])], 0
        for t in range(int(aux["lengths"][i])):
            for _ in range(m):
                k = int(jnp.argmax(logits[i, t, u]))
                if k == 0:
                    break
                assert k == int(y[u])
                u += 1
        assert u == len(y)
        assert np.all(np.asarray(tokens[i, len(y) :]) == 0)


def _all_label_sequences(num_classes, max_len):
    return [
        y
        for n in range(max_len + 1)
        for y in itertools.product(range(1, num_classes + 1), repeat=n)
    ]


def _restricted_log_probs(model, feats, lengths, ys, max_symbols):
    """Brute force, one utterance feats [1, T, F]: log sum over the alignments with at most
    max_symbols labels per frame, for each label sequence in ys."""
    labels = np.zeros((len(ys), max(1, max(len(y) for y in ys))), np.int32)
    for i, y in enumerate(ys):
        labels[i, : len(y)] = y
    rep = lambda a: jnp.repeat(a, len(ys), axis=0)
    logits, aux = _forward(model, rep(feats), rep(lengths), jnp.asarray(labels))
    logp, t = _log_softmax(logits), int(aux["lengths"][0])
    return np.array(
        [
            _brute_log_prob(logp[i], list(y), _compositions(len(y), t, max_symbols))
            for i, y in enumerate(ys)
        ]
    )


def _row(tokens, length):
    return tuple(int(x) for x in tokens[: int(length)])


def test_exhaustive_beam_search_is_exact_and_finds_the_best_labels():
    """A beam wider than the number of prefixes keeps everything: every returned score is the
    brute-force log-probability and the best is the argmax over all label sequences."""
    t, m, beam = 2, 2, 32
    model = _model(seed=2, num_classes=2)
    feats, lengths = _feats(2, 1, t), jnp.array([t])
    ys = _all_label_sequences(2, t * m)  # 31
    brute = _restricted_log_probs(model, feats, lengths, ys, m)
    tokens, n, scores = _beam_search(model, feats, lengths, beam=beam, max_symbols_per_step=m)
    got = {
        _row(tokens[0, j], n[0, j]): float(scores[0, j])
        for j in range(beam)
        if np.isfinite(float(scores[0, j]))
    }
    assert len(got) == len(ys)
    for y, s in zip(ys, brute):
        np.testing.assert_allclose(got[y], s, rtol=1e-5)
    assert _row(tokens[0, 0], n[0, 0]) == ys[int(np.argmax(brute))]
    assert np.all(np.diff(np.asarray(scores[0])) <= 0)  # best first


def test_beam_of_four_scores_at_least_greedy():
    """One label class, 3 frames, one symbol per frame: 4 prefixes, so beam=4 is exhaustive
    and its answer must be at least as likely under the model as greedy's (4 random models)."""
    ys = _all_label_sequences(1, 3)
    beam_better = 0
    for seed in range(4):
        model = _model(seed=10 + seed, num_classes=1, sharpen=2.0)
        feats, lengths = _feats(seed, 2, 3), jnp.array([3, 2])
        g_tok, g_len = _greedy(model, feats, lengths, max_symbols_per_step=1)
        b_tok, b_len = _beam(model, feats, lengths, beam=4, max_symbols_per_step=1)
        for i in range(2):
            scores = dict(
                zip(ys, _restricted_log_probs(model, feats[i : i + 1], lengths[i : i + 1], ys, 1))
            )
            y_g, y_b = _row(g_tok[i], g_len[i]), _row(b_tok[i], b_len[i])
            assert scores[y_b] == max(scores.values())
            assert scores[y_b] >= scores[y_g]
            beam_better += scores[y_b] > scores[y_g] + 1e-6
    assert beam_better > 0  # the cases differ somewhere: the comparison is not vacuous


def test_narrow_beam_scores_are_lower_bounds_of_the_exact_ones():
    """With pruning a hypothesis may lose alignments, never gain them."""
    t, m, beam = 4, 2, 3
    model = _model(seed=3, num_classes=3)
    feats, lengths = _feats(3, 1, t), jnp.array([t])
    tokens, n, scores = _beam_search(model, feats, lengths, beam=beam, max_symbols_per_step=m)
    ys = [_row(tokens[0, j], n[0, j]) for j in range(beam)]
    exact = _restricted_log_probs(model, feats, lengths, ys, m)
    assert len(set(ys)) == beam
    assert np.all(np.asarray(scores[0]) <= exact + 1e-5)


def test_decoding_in_a_jitted_eval_step_is_batched_and_ignores_padding():
    """As the eval step calls it: nnx.merge inside jax.jit. A sequence's result does not depend
    on its neighbours in the batch or on what its padded frames contain."""
    model = _model(seed=4, num_classes=3, sharpen=3.0)
    graphdef, params = nnx.split(model, nnx.Param)

    @jax.jit
    def decode(params, feats, lengths):
        m = nnx.merge(graphdef, params)
        return (
            transducer.greedy_decode(m, feats, lengths, max_symbols_per_step=2),
            transducer.beam_decode(m, feats, lengths, beam=3, max_symbols_per_step=2),
        )

    feats, lengths = _feats(4, 3, 5), jnp.array([5, 2, 4])
    (g_tok, g_len), (b_tok, b_len) = decode(params, feats, lengths)
    assert g_tok.shape == b_tok.shape == (3, 10)
    assert int(g_len.sum()) > 0 and int(b_len.sum()) > 0
    pad = jnp.arange(5)[None, :, None] >= lengths[:, None, None]
    noisy = jnp.where(pad, 100.0 * _feats(5, 3, 5), feats)
    flip = slice(None, None, -1)
    (g2, gl2), (b2, bl2) = decode(params, noisy[flip], lengths[flip])
    for i, j in zip(range(3), (2, 1, 0)):
        assert _row(g_tok[i], g_len[i]) == _row(g2[j], gl2[j])
        assert _row(b_tok[i], b_len[i]) == _row(b2[j], bl2[j])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"feats": jnp.zeros((5, 3))}, "feats"),
        ({"lengths": jnp.array([5, 5])}, "lengths"),
        ({"beam": 0}, "beam"),
        ({"max_symbols_per_step": 0}, "max_symbols_per_step"),
    ],
)
def test_decoding_bad_input_raises_naming_the_argument(kwargs, name):
    model = _model()
    args = {
        "feats": _feats(0, 1, 5),
        "lengths": jnp.array([5]),
        "beam": 2,
        "max_symbols_per_step": 1,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        transducer.beam_decode(model, **args)
    if "beam" not in kwargs:
        args.pop("beam")
        with pytest.raises(ValueError, match=name):
            transducer.greedy_decode(model, **args)


@pytest.mark.slow
def test_a_small_transducer_learns_to_transcribe_a_toy_task():
    """Each label is a distinct feature pattern held for 2 frames, with silence between; after
    training, greedy and beam decoding give the labels back on new sequences."""
    num_classes, feat = 3, 4
    patterns = np.eye(feat)[1 : num_classes + 1] * 3.0  # label k -> pattern k; silence = 0

    def sample(rng, batch, u_max=3):
        lengths_u = rng.integers(1, u_max + 1, size=batch)
        labels = np.zeros((batch, u_max), np.int32)
        feats = np.zeros((batch, 3 * u_max + 1, feat), np.float32)
        for i, n in enumerate(lengths_u):
            labels[i, :n] = rng.integers(1, num_classes + 1, size=n)
            for j, k in enumerate(labels[i, :n]):
                feats[i, 3 * j + 1 : 3 * j + 3] = patterns[k - 1]
        feats += rng.normal(scale=0.1, size=feats.shape).astype(np.float32)
        return (
            jnp.asarray(feats),
            jnp.full((batch,), feats.shape[1]),
            jnp.asarray(labels),
            jnp.asarray(lengths_u),
        )

    cfg = {
        "kind": "transducer",
        "cell": "gru",
        "hidden": 16,
        "layers": 1,
        "bidirectional": True,
        "pred_hidden": 16,
        "joint_dim": 16,
    }
    model = transducer.Transducer(cfg, num_features=feat, num_classes=num_classes, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)

    @jax.jit
    def train_step(params, opt_state, feats, lengths, labels, label_lengths):
        def loss_fn(p):
            logits, aux = nnx.merge(graphdef, p)(feats, lengths, labels=labels)
            return rnnt_loss(logits, aux["lengths"], labels, label_lengths).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(0)
    losses = []
    for _ in range(150):
        feats, lengths, labels, label_lengths = sample(rng, 16)
        params, opt_state, loss = train_step(
            params, opt_state, feats, lengths, labels, label_lengths
        )
        losses.append(float(loss))
    assert np.mean(losses[-10:]) < 0.1 * np.mean(losses[:10])
    nnx.update(model, params)
    feats, lengths, labels, label_lengths = sample(np.random.default_rng(1), 8)
    want = [_row(labels[i], label_lengths[i]) for i in range(8)]
    g_tok, g_len = _greedy(model, feats, lengths, max_symbols_per_step=2)
    b_tok, b_len = _beam(model, feats, lengths, beam=4, max_symbols_per_step=2)
    assert [_row(g_tok[i], g_len[i]) for i in range(8)] == want
    assert [_row(b_tok[i], b_len[i]) for i in range(8)] == want
