"""JAX features against librosa, framing convention, normalisation and SpecAugment.

Tolerance vs librosa: |difference| <= 1e-3 on natural-log mel energies (log(mel + 1e-6))
and on MFCCs; measured differences are ~1e-5 (float32 JAX vs float64 librosa).
"""

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from rnnbench import features as F

ATOL = 1e-3


def _signal(n=12000, seed=0):
    """Deterministic speech-like test signal: harmonic chirp + noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    f0 = 120 + 80 * t / t[-1]
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 15)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    x = 0.2 * x + 0.01 * rng.standard_normal(n)
    return x.astype(np.float32)


def _librosa_logmel(y, n_fft=512, htk=False):
    p = (n_fft - 400) // 2  # librosa centres the 400-sample window inside n_fft
    mel = librosa.feature.melspectrogram(
        y=np.pad(y.astype(np.float64), (p, p)),
        sr=16000,
        n_fft=n_fft,
        hop_length=160,
        win_length=400,
        center=False,
        power=2.0,
        n_mels=40,
        fmin=20.0,
        fmax=8000.0,
        htk=htk,
        norm="slaney",
    )
    return np.log(mel + F.LOG_EPS).T


@pytest.mark.parametrize("n_fft,htk", [(None, False), (400, False), (None, True)])
def test_log_mel_matches_librosa(n_fft, htk):
    y = _signal()
    feats, fl = F.log_mel(y[None], np.array([y.size]), n_fft=n_fft, htk=htk)
    ref = _librosa_logmel(y, n_fft or 512, htk)
    assert feats.shape == (1, ref.shape[0], 40) and int(fl[0]) == ref.shape[0]
    np.testing.assert_allclose(np.asarray(feats[0]), ref, atol=ATOL)


def test_mfcc_matches_librosa_dct():
    y = _signal(seed=1)
    m, _ = F.mfcc(y[None], np.array([y.size]), n_mfcc=13)
    ref = librosa.feature.mfcc(S=_librosa_logmel(y).T, n_mfcc=13, dct_type=2, norm="ortho").T
    np.testing.assert_allclose(np.asarray(m[0]), ref, atol=ATOL)


def test_framing_convention_and_padding():
    y = _signal()
    n_short = 5000
    batch = np.zeros((2, y.size), np.float32)
    batch[0], batch[1, :n_short] = y, y[:n_short]
    feats, fl = jax.jit(F.log_mel)(batch, np.array([y.size, n_short]))
    T = 1 + (y.size - 400) // 160
    assert feats.shape == (2, T, 40)
    assert fl.tolist() == [T, 1 + (n_short - 400) // 160]
    assert np.asarray(F.num_frames(np.array([399, 400, 559, 560]))).tolist() == [0, 1, 1, 2]
    alone, _ = F.log_mel(y[None, :n_short], np.array([n_short]))
    np.testing.assert_allclose(np.asarray(feats[1, : fl[1]]), np.asarray(alone[0]), atol=1e-5)
    assert not np.asarray(feats[1, fl[1] :]).any()


def test_normalize_modes():
    rng = np.random.default_rng(0)
    feats = jnp.asarray(rng.normal(3.0, 2.0, (3, 50, 40)).astype(np.float32))
    fl = jnp.array([50, 20, 0])
    out = np.asarray(F.normalize(feats, fl, "utterance"))
    for b, n in enumerate([50, 20]):
        np.testing.assert_allclose(out[b, :n].mean(0), 0.0, atol=1e-4)
        np.testing.assert_allclose(out[b, :n].std(0), 1.0, atol=1e-3)
        assert not out[b, n:].any()
    assert np.isfinite(out).all() and not out[2].any()
    mean, std = np.full(40, 3.0, np.float32), np.full(40, 2.0, np.float32)
    g = np.asarray(F.normalize(feats, fl, "global", mean=mean, std=std))
    np.testing.assert_allclose(g[0], (np.asarray(feats[0]) - 3.0) / 2.0, rtol=1e-4, atol=1e-4)
    gb = np.asarray(F.normalize(feats, fl, "global"))
    valid = np.concatenate([gb[0], gb[1, :20]])
    np.testing.assert_allclose(valid.mean(0), 0.0, atol=1e-4)
    with pytest.raises(ValueError, match="normalize mode"):
        F.normalize(feats, fl, "bogus")


def test_spec_augment_masks():
    feats = jnp.ones((4, 60, 40))
    fl = jnp.array([60, 60, 30, 10])
    kw = {"num_time_masks": 2, "time_mask_width": 10, "num_freq_masks": 2, "freq_mask_width": 8}
    a = np.asarray(F.spec_augment(jax.random.PRNGKey(0), feats, fl, **kw))
    b = np.asarray(F.spec_augment(jax.random.PRNGKey(0), feats, fl, **kw))
    c = np.asarray(F.spec_augment(jax.random.PRNGKey(1), feats, fl, **kw))
    assert a.shape == feats.shape and np.array_equal(a, b) and not np.array_equal(a, c)
    assert set(np.unique(a)) <= {0.0, 1.0} and (a == 0).any()
    for row, n in zip(a, fl.tolist()):
        masked_t = (row == 0).all(axis=1)  # whole frames masked
        masked_f = (row == 0).all(axis=0)  # whole channels masked
        assert masked_t.sum() <= 20 and masked_f.sum() <= 16
        assert not masked_t[n:].any() or masked_f.all()  # time masks stay inside valid frames
        # every zero is explained by a time or a frequency mask
        assert ((row == 0) == (masked_t[:, None] | masked_f[None, :])).all()
    jitted = jax.jit(lambda k, x, l: F.spec_augment(k, x, l, **kw))
    assert np.array_equal(np.asarray(jitted(jax.random.PRNGKey(0), feats, fl)), a)


def test_extract_kinds_and_jit():
    y = _signal()
    audio, lengths = np.stack([y, y * 0.5]), np.array([y.size, 8000])
    f1, l1 = F.extract(audio, lengths, kind="logmel", normalize="utterance")
    f2, l2 = jax.jit(lambda a, l: F.extract(a, l, kind="mfcc", n_mfcc=20, normalize="none"))(
        audio, lengths
    )
    assert f1.shape[-1] == 40 and f2.shape[-1] == 20 and l1.tolist() == l2.tolist()
    np.testing.assert_allclose(np.asarray(f1[0, : l1[0]]).mean(0), 0.0, atol=1e-4)
    with pytest.raises(ValueError, match="kind"):
        F.extract(audio, lengths, kind="spectrogram")


def test_warp_mel_axis_moves_content_by_the_drawn_factor():
    feats = np.zeros((6, 3, 40), np.float32)
    feats[:, :, 20] = 1.0  # one lit channel
    key = jax.random.PRNGKey(3)
    same = np.asarray(F.warp_mel_axis(key, jnp.asarray(feats), 0.0))
    np.testing.assert_array_equal(same, feats)  # no warp: the features themselves
    out = np.asarray(jax.jit(lambda k, x: F.warp_mel_axis(k, x, 0.2))(key, feats))
    alpha = np.asarray(jax.random.uniform(key, (6, 1), minval=0.8, maxval=1.2))[:, 0]
    centres = F._mel_to_hz(
        np.linspace(F._hz_to_mel(20.0, False), F._hz_to_mel(8000.0, False), 42), False
    )[1:-1]
    for b in range(6):
        # the output's centre of mass sits where the lit channel's frequency times alpha falls
        com = (out[b, 0] * np.arange(40)).sum() / out[b, 0].sum()
        expected = np.interp(centres[20] * alpha[b], centres, np.arange(40))
        assert abs(com - expected) < 0.5, (b, alpha[b], com, expected)
        assert np.isclose(out[b, 0].max(), 1.0, atol=0.5) and (out[b] >= 0).all()
    assert (alpha > 1).any() and (alpha < 1).any()


def test_spec_augment_mel_warp_keeps_the_masks():
    feats = jnp.ones((4, 60, 40))  # constant features: the warp leaves them as they are
    fl = jnp.array([60, 60, 30, 10])
    key = jax.random.PRNGKey(0)
    plain = np.asarray(F.spec_augment(key, feats, fl))
    np.testing.assert_array_equal(np.asarray(F.spec_augment(key, feats, fl, mel_warp=0.0)), plain)
    warped = np.asarray(F.spec_augment(key, feats, fl, mel_warp=0.15))
    valid = np.arange(60)[None, :, None] < np.asarray(fl)[:, None, None]
    np.testing.assert_allclose(warped, np.where(valid, plain, 0.0), atol=1e-6)
    with pytest.raises(ValueError, match="mel_warp must be in"):
        F.spec_augment(key, feats, fl, mel_warp=1.5)
    ramp = jnp.broadcast_to(jnp.arange(40.0), (4, 60, 40))  # a ramp is warped: values move
    assert not np.allclose(
        np.asarray(F.spec_augment(key, ramp, fl, mel_warp=0.15)),
        np.asarray(F.spec_augment(key, ramp, fl)),
    )
