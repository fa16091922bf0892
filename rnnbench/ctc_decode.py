"""CTC prefix beam search with optional character n-gram LM shallow fusion.

Greedy decoding (``rnnbench.metrics.ctc_greedy_collapse``) stays the fast default; this is the
search the toolkits report: Hannun et al. 2014 ("First-pass large vocabulary continuous speech
recognition using bi-directional recurrent DNNs", algorithm 1), as in SpeechBrain's
``CTCPrefixBeamSearcher``. Every prefix keeps two log-probabilities over the frames so far,
p_blank (alignments ending in blank) and p_nonblank (ending in the prefix's last label), so the
probability of a labelling is summed over all its alignments, not read off one best path.

Hypotheses are ranked by

    log P_ctc(prefix) + lm_weight * log P_lm(prefix) + insertion_bonus * len(prefix),

and at the last frame the LM's end-of-sentence probability is added to each finished
hypothesis. Ids are CTC ids: 0 = blank, label i is ``alphabet[i - 1]`` (``Dataset.decode``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from rnnbench.char_lm import CharNgramLM

_NEG_INF = -math.inf


def prefix_beam_search(
    log_probs,
    *,
    beam: int,
    token_prune: int | float | None = None,  # noqa: PYI041 - k or threshold
    lm: CharNgramLM | None = None,
    lm_weight: float = 0.0,
    insertion_bonus: float = 0.0,
) -> tuple[list[int], float]:
    """Most probable labelling of one utterance under CTC (and the LM, if given).

    Args:
      log_probs: [time, vocab] log-softmax outputs, blank id 0 (numpy or anything array-like).
      beam: prefixes kept after each frame (>= 1).
      token_prune: labels extended from at each frame. int k: the k most probable non-blank
        labels of the frame; float x <= 0: the non-blank labels with log-prob >= x; None: all.
        The blank and the repeat of a prefix's own last label are always scored.
      lm: a ``CharNgramLM`` over the dataset alphabet; vocab must be ``len(lm.alphabet) + 1``.
      lm_weight: weight (>= 0) of the LM log-probability; > 0 needs ``lm``.
      insertion_bonus: added per emitted label (counters the LM's bias towards short output).

    Returns:
      (ids, score): label ids (no blanks, repeats merged) and the ranking score above, which
      without LM and bonus is the exact log P_ctc(ids) when no prefix of it was pruned.

    Complexity: O(T * beam * K) log-add updates and an O(beam * K * log(beam * K)) sort per
    frame, with K the labels left by ``token_prune`` (K <= vocab - 1); one LM lookup per new
    prefix (O(order), cached per context). Pure Python and numpy, one utterance at a time.
    """
    lp = _check_log_probs(log_probs)
    vocab = lp.shape[1]
    beam = _check_beam(beam)
    lm_weight, insertion_bonus = _check_weights(lm, lm_weight, insertion_bonus, vocab)
    use_lm = lm is not None and lm_weight > 0
    candidates = _candidates(lp, token_prune)

    lm_next: dict[tuple[int, ...], np.ndarray] = {}  # prefix -> LM log-probs of its next symbol
    lm_total: dict[tuple[int, ...], float] = {(): 0.0}  # prefix -> LM log-prob of its labels

    def lm_scores(prefix: tuple[int, ...]) -> np.ndarray:
        if prefix not in lm_next:
            lm_next[prefix] = lm.next_log_probs("".join(lm.alphabet[i - 1] for i in prefix))
        return lm_next[prefix]

    def rank(prefix: tuple[int, ...], p_blank: float, p_nonblank: float) -> float:
        score = _logaddexp(p_blank, p_nonblank) + insertion_bonus * len(prefix)
        if use_lm:
            if prefix not in lm_total:  # its parent, a kept prefix, is already scored
                parent = prefix[:-1]
                lm_total[prefix] = lm_total[parent] + float(lm_scores(parent)[prefix[-1] - 1])
            score += lm_weight * lm_total[prefix]
        return score

    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, _NEG_INF)}
    for t in range(lp.shape[0]):
        frame = lp[t].tolist()
        blank = frame[0]
        nxt: dict[tuple[int, ...], list[float]] = {}  # prefix -> [p_blank, p_nonblank]
        for prefix, (p_b, p_nb) in beams.items():
            p_total = _logaddexp(p_b, p_nb)
            _add(nxt, prefix, p_total + blank, _NEG_INF)  # blank: the prefix stays
            last = prefix[-1] if prefix else None
            if last is not None:  # the last label repeats without a blank between: no new label
                _add(nxt, prefix, _NEG_INF, p_nb + frame[last])
            for c in candidates[t]:
                if c == last:  # a new copy of the last label needs a blank in between
                    _add(nxt, prefix + (c,), _NEG_INF, p_b + frame[c])
                else:
                    _add(nxt, prefix + (c,), _NEG_INF, p_total + frame[c])

        scored = sorted(((-rank(p, b, nb), p) for p, (b, nb) in nxt.items()))
        beams = {p: tuple(nxt[p]) for _, p in scored[:beam]}

    best, best_score = (), _NEG_INF
    for prefix, (p_b, p_nb) in beams.items():
        score = rank(prefix, p_b, p_nb)
        if use_lm:
            score += lm_weight * float(lm_scores(prefix)[-1])  # end of sentence
        if score > best_score or (score == best_score and prefix < best):
            best, best_score = prefix, score
    return list(best), float(best_score)


def decode_batch(log_probs, lengths, **kw) -> list[list[int]]:
    """``prefix_beam_search`` on each row of [batch, time, vocab] up to its frame length [batch].

    ``kw`` is passed to ``prefix_beam_search`` (beam, token_prune, lm, lm_weight,
    insertion_bonus). Returns one list of label ids per row.
    """
    lp = np.asarray(log_probs)
    lengths = np.asarray(lengths).reshape(-1)
    if lp.ndim != 3:
        raise ValueError(
            f"decode_batch: log_probs has shape {lp.shape}, expected [batch, time, vocab]"
        )
    if lengths.shape[0] != lp.shape[0]:
        raise ValueError(
            f"decode_batch: lengths has {lengths.shape[0]} entries for a batch of {lp.shape[0]}"
        )
    if lengths.size and (lengths.min() < 0 or lengths.max() > lp.shape[1]):
        raise ValueError(
            f"decode_batch: lengths must lie in [0, {lp.shape[1]}] (the time "
            f"axis); got min {lengths.min()}, max {lengths.max()}"
        )
    return [prefix_beam_search(lp[b, : int(n)], **kw)[0] for b, n in enumerate(lengths)]


# ----------------------------------------------------------------------------- helpers


def _add(table: dict, prefix: tuple[int, ...], p_blank: float, p_nonblank: float) -> None:
    """Adds (log-adds) probability mass to ``table[prefix] = [p_blank, p_nonblank]``."""
    entry = table.get(prefix)
    if entry is None:
        table[prefix] = [p_blank, p_nonblank]
    else:
        entry[0] = _logaddexp(entry[0], p_blank)
        entry[1] = _logaddexp(entry[1], p_nonblank)


def _logaddexp(a: float, b: float) -> float:
    if a == _NEG_INF:
        return b
    if b == _NEG_INF:
        return a
    if a < b:
        a, b = b, a
    return a + math.log1p(math.exp(b - a))


def _check_log_probs(log_probs) -> np.ndarray:
    lp = np.asarray(log_probs, np.float64)
    if lp.ndim != 2:
        raise ValueError(
            f"prefix_beam_search: log_probs has shape {lp.shape}, expected "
            "[time, vocab] (use decode_batch for [batch, time, vocab])"
        )
    if lp.shape[1] < 2:
        raise ValueError(
            f"prefix_beam_search: log_probs has vocab {lp.shape[1]}, expected >= 2 "
            "(blank id 0 and at least one label)"
        )
    if np.isnan(lp).any() or (lp == np.inf).any():
        raise ValueError("prefix_beam_search: log_probs contains NaN or +inf")
    if lp.shape[0]:
        norm = np.logaddexp.reduce(lp, axis=1)
        worst = float(np.max(np.abs(norm)))
        if not worst <= 1e-3:
            raise ValueError(
                f"prefix_beam_search: log_probs rows are not log-softmax (logsumexp "
                f"off by {worst:.3g}); pass jax.nn.log_softmax(logits, -1)"
            )
    return lp


def _check_beam(beam) -> int:
    if isinstance(beam, bool) or not isinstance(beam, numbers.Integral) or beam < 1:
        raise ValueError(f"prefix_beam_search: beam={beam!r}, expected an int >= 1")
    return int(beam)


def _check_weights(lm, lm_weight, insertion_bonus, vocab: int) -> tuple[float, float]:
    if not isinstance(lm_weight, numbers.Real) or not math.isfinite(lm_weight) or lm_weight < 0:
        raise ValueError(
            f"prefix_beam_search: lm_weight={lm_weight!r}, expected a finite number >= 0"
        )
    if not isinstance(insertion_bonus, numbers.Real) or not math.isfinite(insertion_bonus):
        raise ValueError(
            f"prefix_beam_search: insertion_bonus={insertion_bonus!r}, expected a finite number"
        )
    if lm is None:
        if lm_weight > 0:
            raise ValueError(
                f"prefix_beam_search: lm_weight={lm_weight} needs an lm (CharNgramLM); got lm=None"
            )
    else:
        if not isinstance(lm, CharNgramLM):
            raise ValueError(f"prefix_beam_search: lm is {type(lm).__name__}, expected CharNgramLM")
        if vocab != len(lm.alphabet) + 1:
            raise ValueError(
                f"prefix_beam_search: log_probs vocab {vocab} does not match the "
                f"lm alphabet ({len(lm.alphabet)} characters + blank = "
                f"{len(lm.alphabet) + 1})"
            )
    return float(lm_weight), float(insertion_bonus)


def _candidates(lp: np.ndarray, token_prune) -> Sequence[list[int]]:
    """Per frame, the non-blank label ids to extend prefixes with (ascending ids)."""
    labels = lp[:, 1:]
    if token_prune is None:
        keep = np.ones_like(labels, bool)
    elif isinstance(token_prune, bool):
        raise ValueError(
            "prefix_beam_search: token_prune=bool; expected an int k >= 1 (top-k), "
            "a float <= 0 (log-prob threshold) or None"
        )
    elif isinstance(token_prune, numbers.Integral):
        if token_prune < 1:
            raise ValueError(
                f"prefix_beam_search: token_prune={token_prune} (top-k), expected k >= 1"
            )
        k = min(int(token_prune), labels.shape[1])
        order = np.argsort(-labels, axis=1, kind="stable")[:, :k]
        keep = np.zeros_like(labels, bool)
        np.put_along_axis(keep, order, True, axis=1)
    elif isinstance(token_prune, numbers.Real):
        if math.isnan(token_prune) or token_prune > 0:
            raise ValueError(
                f"prefix_beam_search: token_prune={token_prune} (log-prob "
                "threshold), expected a float <= 0"
            )
        keep = labels >= token_prune
    else:
        raise ValueError(
            f"prefix_beam_search: token_prune={token_prune!r}, expected an int "
            "k >= 1 (top-k), a float <= 0 (log-prob threshold) or None"
        )
    return [(np.flatnonzero(row) + 1).tolist() for row in keep]
