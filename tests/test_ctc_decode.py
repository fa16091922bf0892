"""CTC prefix beam search (rnnbench.ctc_decode) and the character n-gram LM (rnnbench.char_lm)."""

import itertools
import math
import random

import numpy as np
import pytest

from rnnbench import ctc_decode
from rnnbench.char_lm import CharNgramLM
from rnnbench.data import CTC_ALPHABET
from rnnbench.metrics import ctc_greedy_collapse


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def _random_log_probs(rng, t, v, sharpness=2.0):
    return _log_softmax(sharpness * rng.normal(size=(t, v)))


def _labelling_log_probs(lp):
    """Every labelling reachable in len(lp) frames -> log of the sum over all its alignments."""
    t, v = lp.shape
    out = {}
    for path in itertools.product(range(v), repeat=t):
        labels = tuple(ctc_greedy_collapse(np.array(path, np.int64)).tolist())
        logp = float(sum(lp[i, k] for i, k in enumerate(path)))
        out[labels] = np.logaddexp(out.get(labels, -np.inf), logp)
    return out


def _exhaustive_best(lp, lm=None, lm_weight=0.0, insertion_bonus=0.0):
    def fused(labels, ctc):
        score = ctc + insertion_bonus * len(labels)
        if lm is not None and lm_weight > 0:
            score += lm_weight * lm.log_prob("".join(lm.alphabet[i - 1] for i in labels))
        return score

    scores = {labels: fused(labels, ctc) for labels, ctc in _labelling_log_probs(lp).items()}
    best = max(scores, key=scores.get)
    return list(best), scores[best], scores


# ----------------------------------------------------------------------------- (a) exhaustive


@pytest.mark.parametrize("seed", range(12))
def test_beam_search_equals_exhaustive_search_over_all_paths(seed):
    rng = np.random.default_rng(seed)
    t, v = int(rng.integers(1, 6)), int(rng.integers(2, 4))
    lp = _random_log_probs(rng, t, v, sharpness=float(rng.uniform(0.5, 3.0)))
    best, exact, scores = _exhaustive_best(lp)
    # At most sum_{L<=5} 2^L = 63 prefixes exist, so beam=64 prunes nothing.
    ids, score = ctc_decode.prefix_beam_search(lp, beam=64)
    assert ids == best
    np.testing.assert_allclose(score, exact, rtol=0, atol=1e-10)
    # The probabilities of all labellings sum to one (the enumeration itself is right).
    np.testing.assert_allclose(np.logaddexp.reduce(list(scores.values())), 0.0, atol=1e-10)


@pytest.mark.parametrize("seed", range(8))
def test_beam_search_with_lm_and_bonus_equals_exhaustive_fused_search(seed):
    rng = np.random.default_rng(100 + seed)
    lm = CharNgramLM.fit(
        ["ab", "ba", "aab", "b", "abba"], order=int(rng.integers(1, 4)), alphabet="ab"
    )
    lp = _random_log_probs(rng, int(rng.integers(2, 6)), 3, sharpness=1.0)
    lm_weight, bonus = float(rng.uniform(0.2, 2.0)), float(rng.uniform(-1.0, 1.0))
    best, exact, _ = _exhaustive_best(lp, lm, lm_weight, bonus)
    # The fused score adds log P(</s> | prefix), exactly as lm.log_prob does.
    ids, score = ctc_decode.prefix_beam_search(
        lp, beam=64, lm=lm, lm_weight=lm_weight, insertion_bonus=bonus
    )
    assert ids == best
    np.testing.assert_allclose(score, exact, rtol=0, atol=1e-10)


def test_token_prune_keeping_every_label_changes_nothing():
    rng = np.random.default_rng(7)
    for _ in range(5):
        lp = _random_log_probs(rng, 5, 3)
        ref = ctc_decode.prefix_beam_search(lp, beam=4)
        assert ctc_decode.prefix_beam_search(lp, beam=4, token_prune=2) == ref
        assert ctc_decode.prefix_beam_search(lp, beam=4, token_prune=-1e9) == ref


def test_token_prune_drops_labels_below_the_threshold():
    lp = np.log([[0.6, 0.4], [0.6, 0.4]])
    assert ctc_decode.prefix_beam_search(lp, beam=4)[0] == [1]
    ids, score = ctc_decode.prefix_beam_search(lp, beam=4, token_prune=math.log(0.5))
    assert ids == []
    np.testing.assert_allclose(score, math.log(0.36), atol=1e-12)  # only blank-blank is left


def test_top_k_prune_keeps_the_k_best_labels_of_each_frame():
    lp = np.log([[0.05, 0.35, 0.6], [0.4, 0.55, 0.05]])
    # Unpruned, "a" wins: aa + a- + -a = 0.1925 + 0.14 + 0.0275 = 0.36.
    ids, score = ctc_decode.prefix_beam_search(lp, beam=8)
    assert ids == [1]
    np.testing.assert_allclose(score, math.log(0.36), atol=1e-12)
    # Top-1 per frame starts no "a" at frame 0 (b is more likely there), so "ba" (0.6 * 0.55)
    # beats what is left of "a" (-a: 0.0275) and of "b" (bb + b-: 0.27).
    ids, score = ctc_decode.prefix_beam_search(lp, beam=8, token_prune=1)
    assert ids == [2, 1]
    np.testing.assert_allclose(score, math.log(0.33), atol=1e-12)


# ----------------------------------------------------------------------------- (b) vs greedy


def test_beam_one_matches_greedy_on_peaked_outputs():
    rng = np.random.default_rng(3)
    for _ in range(10):
        path = rng.integers(0, 29, size=40)
        logits = np.full((40, 29), 0.0)
        logits[np.arange(40), path] = 8.0
        lp = _log_softmax(logits)
        greedy = ctc_greedy_collapse(np.argmax(lp, -1)).tolist()
        assert greedy  # 40 frames over 29 symbols: some label survives
        assert ctc_decode.prefix_beam_search(lp, beam=1)[0] == greedy
        assert ctc_decode.prefix_beam_search(lp, beam=8, token_prune=4)[0] == greedy


def test_beam_search_beats_greedy_when_alignments_add_up():
    # Each frame: blank 0.6, "a" 0.4. Best path is blank-blank -> "" with P = 0.36, but
    # "a" has three alignments (aa, a-, -a): P = 0.16 + 0.24 + 0.24 = 0.64.
    lp = np.log([[0.6, 0.4], [0.6, 0.4]])
    assert ctc_greedy_collapse(np.argmax(lp, -1)).tolist() == []
    ids, score = ctc_decode.prefix_beam_search(lp, beam=2)
    assert ids == [1]
    np.testing.assert_allclose(score, math.log(0.64), atol=1e-12)
    exact = _labelling_log_probs(lp)
    np.testing.assert_allclose(exact[(1,)], math.log(0.64), atol=1e-12)
    np.testing.assert_allclose(exact[()], math.log(0.36), atol=1e-12)


def test_repeated_label_needs_a_blank_between():
    # "aa" only through a-blank-a; "a" through every other non-empty path.
    lp = np.log([[0.1, 0.9], [0.5, 0.5], [0.1, 0.9]])
    labellings = _labelling_log_probs(lp)
    ids, score = ctc_decode.prefix_beam_search(lp, beam=8)
    assert ids == [1]
    np.testing.assert_allclose(score, labellings[(1,)], atol=1e-12)
    np.testing.assert_allclose(labellings[(1, 1)], math.log(0.9 * 0.5 * 0.9), atol=1e-12)


def test_decode_batch_uses_each_row_length():
    lp = np.stack(
        [np.log([[0.1, 0.9], [0.9, 0.1], [0.1, 0.9]]), np.log([[0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])]
    )
    assert ctc_decode.decode_batch(lp, [3, 1], beam=4) == [[1, 1], [1]]
    assert ctc_decode.decode_batch(lp, np.array([0, 2]), beam=4) == [[], [1]]


# ----------------------------------------------------------------------------- (c) the LM

TEXTS = ["one two three", "seven", "four oh seven", "nine nine", "zero eight six five"]


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_lm_next_symbol_distribution_sums_to_one(order):
    lm = CharNgramLM.fit(TEXTS, order=order, alphabet=CTC_ALPHABET)
    for context in ["", "s", "seve", "four oh ", "qqxz'", "nine nine nine"]:
        lp = lm.next_log_probs(context)
        assert lp.shape == (len(CTC_ALPHABET) + 1,)
        assert np.all(np.isfinite(lp))
        np.testing.assert_allclose(np.exp(lp).sum(), 1.0, atol=1e-12)
        assert lm.score(context, CharNgramLM.EOS) == lp[-1]
        assert lm.score(context, "e") == lp[CTC_ALPHABET.index("e")]


def test_lm_witten_bell_values_by_hand():
    # Unigram on "aa": counts a=2, b=0, </s>=1; N=3 tokens of T=2 types, uniform base 1/3.
    lm = CharNgramLM.fit(["aa"], order=1, alphabet="ab")
    np.testing.assert_allclose(np.exp(lm.next_log_probs("")), [8 / 15, 2 / 15, 5 / 15])
    # Bigram on "ab": P(b | a) = (1 + 1 * P1(b)) / (1 + 1); P1 = (1 + 3/3) / 6 = 1/3 each.
    lm = CharNgramLM.fit(["ab"], order=2, alphabet="ab")
    np.testing.assert_allclose(math.exp(lm.score("a", "b")), (1 + 1 / 3) / 2)
    np.testing.assert_allclose(math.exp(lm.score("a", "a")), (1 / 3) / 2)
    # P(a | <s>): the context <s> was seen once, followed by a.
    np.testing.assert_allclose(math.exp(lm.score("", "a")), (1 + 1 / 3) / 2)
    # "b" was followed only by </s>: P(</s> | b) = (1 + 1/3) / 2.
    np.testing.assert_allclose(math.exp(lm.score("ab", CharNgramLM.EOS)), (1 + 1 / 3) / 2)


def test_lm_log_prob_is_the_sum_of_its_scores_and_prefers_training_text():
    lm = CharNgramLM.fit(TEXTS, order=4, alphabet=CTC_ALPHABET)
    text = "four oh seven"
    total = sum(lm.score(text[:i], text[i]) for i in range(len(text)))
    total += lm.score(text, CharNgramLM.EOS)
    np.testing.assert_allclose(lm.log_prob(text), total, atol=1e-12)
    assert lm.log_prob("seven") > lm.log_prob("sevne")
    assert lm.log_prob("nine") > lm.log_prob("nnie")


def test_lm_json_roundtrip_and_independent_of_text_order():
    lm = CharNgramLM.fit(TEXTS, order=3, alphabet=CTC_ALPHABET)
    shuffled = list(TEXTS)
    random.Random(0).shuffle(shuffled)
    assert CharNgramLM.fit(shuffled, order=3, alphabet=CTC_ALPHABET).to_json() == lm.to_json()
    again = CharNgramLM.from_json(lm.to_json())
    assert again.order == 3 and again.alphabet == tuple(CTC_ALPHABET)
    assert again.to_json() == lm.to_json()
    for text in ["seven", "xyz", "one two"]:
        assert again.log_prob(text) == lm.log_prob(text)


def test_lm_fusion_flips_an_ambiguous_decision_towards_the_lm():
    # One frame, "a" slightly more likely than "b"; the LM has only ever seen "b".
    lp = np.log([[0.02, 0.50, 0.48]])
    lm = CharNgramLM.fit(["b", "bb", "b"], order=2, alphabet="ab")
    assert ctc_decode.prefix_beam_search(lp, beam=4)[0] == [1]
    assert ctc_decode.prefix_beam_search(lp, beam=4, lm=lm, lm_weight=0.0)[0] == [1]
    ids, score = ctc_decode.prefix_beam_search(lp, beam=4, lm=lm, lm_weight=1.0)
    assert ids == [2]
    np.testing.assert_allclose(score, math.log(0.48) + lm.log_prob("b"), atol=1e-12)
    # A weight too small to overcome the acoustic margin keeps the acoustic choice.
    margin = math.log(0.50 / 0.48) / (lm.log_prob("b") - lm.log_prob("a"))
    assert ctc_decode.prefix_beam_search(lp, beam=4, lm=lm, lm_weight=0.5 * margin)[0] == [1]
    assert ctc_decode.prefix_beam_search(lp, beam=4, lm=lm, lm_weight=2.0 * margin)[0] == [2]


def test_insertion_bonus_trades_against_output_length():
    lp = np.log([[0.55, 0.45]])  # "" beats "a" by log(0.55 / 0.45) = 0.2007
    assert ctc_decode.prefix_beam_search(lp, beam=2) == ([], pytest.approx(math.log(0.55)))
    ids, score = ctc_decode.prefix_beam_search(lp, beam=2, insertion_bonus=0.3)
    assert ids == [1]
    np.testing.assert_allclose(score, math.log(0.45) + 0.3, atol=1e-12)
    assert ctc_decode.prefix_beam_search(lp, beam=2, insertion_bonus=0.1)[0] == []
    # A negative bonus turns the two-alignment case around: "" then wins over "a".
    lp2 = np.log([[0.6, 0.4], [0.6, 0.4]])
    assert ctc_decode.prefix_beam_search(lp2, beam=2, insertion_bonus=-0.6)[0] == []


# ----------------------------------------------------------------------------- (d) bad input

LP = np.log([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])


@pytest.mark.parametrize(
    "kw, name",
    [
        ({"beam": 0}, "beam"),
        ({"beam": 2.5}, "beam"),
        ({"beam": True}, "beam"),
        ({"beam": 2, "token_prune": 0}, "token_prune"),
        ({"beam": 2, "token_prune": 0.5}, "token_prune"),
        ({"beam": 2, "token_prune": "3"}, "token_prune"),
        ({"beam": 2, "lm_weight": -0.1}, "lm_weight"),
        ({"beam": 2, "lm_weight": 0.5}, "lm_weight"),  # no lm given
        ({"beam": 2, "lm_weight": float("nan")}, "lm_weight"),
        ({"beam": 2, "insertion_bonus": float("inf")}, "insertion_bonus"),
        ({"beam": 2, "lm": "not an lm"}, "lm"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kw, name):
    with pytest.raises(ValueError, match=name):
        ctc_decode.prefix_beam_search(LP, **kw)


def test_bad_log_probs_and_mismatched_vocab_raise():
    with pytest.raises(ValueError, match="log_probs.*vocab"):
        lm = CharNgramLM.fit(["abc"], order=2, alphabet="abc")  # 3 chars + blank = 4, not 3
        ctc_decode.prefix_beam_search(LP, beam=2, lm=lm, lm_weight=1.0)
    with pytest.raises(ValueError, match="log_probs.*shape"):
        ctc_decode.prefix_beam_search(LP[None], beam=2)
    with pytest.raises(ValueError, match="log-softmax"):
        ctc_decode.prefix_beam_search(np.exp(LP), beam=2)  # probabilities, not log-probs
    with pytest.raises(ValueError, match="NaN"):
        ctc_decode.prefix_beam_search(np.where(LP < -2, np.nan, LP), beam=2)
    with pytest.raises(ValueError, match="lengths"):
        ctc_decode.decode_batch(LP[None], [3], beam=2)
    with pytest.raises(ValueError, match="lengths"):
        ctc_decode.decode_batch(LP[None], [1, 2], beam=2)


def test_bad_lm_arguments_raise():
    with pytest.raises(ValueError, match="order"):
        CharNgramLM.fit(TEXTS, order=0, alphabet=CTC_ALPHABET)
    with pytest.raises(ValueError, match="'X'.*alphabet"):
        CharNgramLM.fit(["seven", "Xray"], order=2, alphabet=CTC_ALPHABET)
    with pytest.raises(ValueError, match="empty"):
        CharNgramLM.fit([], order=2, alphabet=CTC_ALPHABET)
    with pytest.raises(ValueError, match="alphabet"):
        CharNgramLM.fit(TEXTS, order=2, alphabet="aab")
    lm = CharNgramLM.fit(TEXTS, order=2, alphabet=CTC_ALPHABET)
    with pytest.raises(ValueError, match="next_char"):
        lm.score("se", "ve")
    with pytest.raises(ValueError, match="context"):
        lm.score("SE", "v")
    with pytest.raises(ValueError, match="format"):
        CharNgramLM.from_json('{"format": "something else"}')
