"""Character n-gram language model for CTC shallow fusion (interpolated Witten-Bell).

Estimated from training transcripts over the dataset alphabet (``rnnbench.data.CTC_ALPHABET``).
Every sentence is padded on the left with ``order - 1`` begin-of-sentence symbols and ends with
an end-of-sentence symbol, so ``lm.log_prob(text)`` is the log-probability of the whole sentence.

Smoothing is interpolated Witten-Bell (Witten & Bell 1991; Chen & Goodman 1999, sec. 2.5): for a
context h seen c(h) times followed by T(h) distinct symbols,

    P(w | h) = (c(h, w) + T(h) P(w | h')) / (c(h) + T(h))     (P(w | h') if c(h) = 0),

where h' drops the oldest symbol of h and the recursion ends in the uniform distribution over the
alphabet and end-of-sentence. Every next-symbol distribution sums to one, no symbol gets zero
probability, and the model depends only on the counts (not on the order of the texts).

    lm = CharNgramLM.fit(train_transcripts, order=4, alphabet=dataset.classes)
    lm.score("seve", "n")                       # log P(n | <s> s e v e)
    lm.score("seven", CharNgramLM.EOS)          # log P(</s> | ... s e v e n)
    lm = CharNgramLM.from_json(lm.to_json())    # the same model, e.g. saved in a workdir
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np

FORMAT = "rnnbench.char_lm/1"
_CACHE_LIMIT = 100_000


class CharNgramLM:
    """Character n-gram LM; next-symbol vocabulary = the alphabet followed by ``EOS``.

    Build with ``CharNgramLM.fit`` or ``CharNgramLM.from_json``. Natural-log probabilities.
    """

    EOS = "</s>"

    def __init__(
        self, order: int, alphabet: Sequence[str], counts: dict[tuple[int, ...], np.ndarray]
    ):
        self.order = _check_order(order)
        self.alphabet = _check_alphabet(alphabet)
        self._index = {c: i for i, c in enumerate(self.alphabet)}
        self._eos = len(self.alphabet)  # id of EOS among the next symbols
        self._bos = len(self.alphabet) + 1  # id of BOS, only ever in a context
        size = len(self.alphabet) + 1
        self._counts = {}
        for ctx, row in counts.items():
            row = np.asarray(row, np.float64)
            if len(ctx) >= self.order or row.shape != (size,) or (row < 0).any():
                raise ValueError(
                    f"CharNgramLM: bad counts for context {ctx}: expected a context "
                    f"shorter than order={self.order} and {size} counts >= 0"
                )
            self._counts[tuple(int(i) for i in ctx)] = row
        self._cache: dict[tuple[int, ...], np.ndarray] = {}

    # ------------------------------------------------------------------ estimation

    @classmethod
    def fit(cls, texts: Iterable[str], order: int, alphabet: Sequence[str]) -> CharNgramLM:
        """Counts every n-gram of orders 1..``order`` in ``texts`` (each one sentence)."""
        order = _check_order(order)
        alphabet = _check_alphabet(alphabet)
        index = {c: i for i, c in enumerate(alphabet)}
        eos, bos, size = len(alphabet), len(alphabet) + 1, len(alphabet) + 1
        counts: dict[tuple[int, ...], np.ndarray] = {}
        n_texts = 0
        for n, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(
                    f"CharNgramLM.fit: texts[{n}] is {type(text).__name__}, expected str"
                )
            ids = []
            for c in text:
                if c not in index:
                    raise ValueError(
                        f"CharNgramLM.fit: character {c!r} of texts[{n}]={text!r} "
                        f"is not in the alphabet {''.join(alphabet)!r}"
                    )
                ids.append(index[c])
            tokens = [bos] * (order - 1) + ids + [eos]
            for i in range(order - 1, len(tokens)):
                for k in range(order):
                    ctx = tuple(tokens[i - k : i])
                    if ctx not in counts:
                        counts[ctx] = np.zeros(size, np.float64)
                    counts[ctx][tokens[i]] += 1
            n_texts += 1
        if n_texts == 0:
            raise ValueError("CharNgramLM.fit: texts is empty; need at least one transcript")
        return cls(order, alphabet, counts)

    # ------------------------------------------------------------------ scoring

    def next_log_probs(self, context: str) -> np.ndarray:
        """log P(next | <s> + context) for every next symbol: float64 [len(alphabet) + 1].

        Entry i < len(alphabet) is ``alphabet[i]``; the last entry is end of sentence.
        """
        return self._next_log_probs(self._context_ids(context))

    def score(self, context: str, next_char: str) -> float:
        """log P(next_char | <s> + context); ``next_char`` is one alphabet character or EOS."""
        if next_char == self.EOS:
            i = self._eos
        elif next_char in self._index:
            i = self._index[next_char]
        else:
            raise ValueError(
                f"CharNgramLM.score: next_char {next_char!r} is neither in the "
                f"alphabet {''.join(self.alphabet)!r} nor CharNgramLM.EOS"
            )
        return float(self.next_log_probs(context)[i])

    def log_prob(self, text: str) -> float:
        """log P(<s> text </s>): the sum of every character's score and end of sentence."""
        ids = self._context_ids(text)
        total = 0.0
        for i in range(len(ids) + 1):
            nxt = ids[i] if i < len(ids) else self._eos
            total += float(self._next_log_probs(ids[:i])[nxt])
        return total

    def _context_ids(self, context: str) -> list[int]:
        try:
            return [self._index[c] for c in context]
        except KeyError as e:
            raise ValueError(
                f"CharNgramLM: character {e.args[0]!r} of context {context!r} is "
                f"not in the alphabet {''.join(self.alphabet)!r}"
            ) from None

    def _next_log_probs(self, ids: Sequence[int]) -> np.ndarray:
        padded = [self._bos] * (self.order - 1) + list(ids)
        ctx = tuple(padded[len(padded) - (self.order - 1) :]) if self.order > 1 else ()
        cached = self._cache.get(ctx)
        if cached is not None:
            return cached
        size = len(self.alphabet) + 1
        prob = np.full(size, 1.0 / size)
        for k in range(len(ctx) + 1):  # shortest context first: P(w | h') feeds P(w | h)
            row = self._counts.get(ctx[len(ctx) - k :])
            if row is None:  # unseen context: back off entirely (and so are all longer ones)
                break
            types = float(np.count_nonzero(row))
            prob = (row + types * prob) / (row.sum() + types)
        out = np.log(prob)
        out.flags.writeable = False
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[ctx] = out
        return out

    # ------------------------------------------------------------------ serialisation

    def to_json(self) -> str:
        """The model as a JSON string (sorted keys: equal models give equal strings)."""
        counts = {
            ",".join(map(str, ctx)): [int(x) if float(x).is_integer() else float(x) for x in row]
            for ctx, row in self._counts.items()
        }
        return json.dumps(
            {
                "format": FORMAT,
                "order": self.order,
                "alphabet": list(self.alphabet),
                "counts": counts,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> CharNgramLM:
        """Inverse of ``to_json``."""
        try:
            blob = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"CharNgramLM.from_json: not JSON ({e})") from None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            got = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
            raise ValueError(f"CharNgramLM.from_json: format {got!r}, expected {FORMAT!r}")
        counts = {
            tuple(int(i) for i in key.split(",") if i): np.asarray(row, np.float64)
            for key, row in blob["counts"].items()
        }
        return cls(blob["order"], blob["alphabet"], counts)

    def __repr__(self) -> str:
        return (
            f"CharNgramLM(order={self.order}, alphabet={''.join(self.alphabet)!r}, "
            f"contexts={len(self._counts)})"
        )


def _check_order(order) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"CharNgramLM: order={order!r}, expected an int >= 1")
    return int(order)


def _check_alphabet(alphabet) -> tuple[str, ...]:
    chars = tuple(alphabet)
    if not chars or any(not isinstance(c, str) or len(c) != 1 for c in chars):
        raise ValueError(
            f"CharNgramLM: alphabet={alphabet!r}, expected non-empty single "
            "characters (e.g. rnnbench.data.CTC_ALPHABET)"
        )
    if len(set(chars)) != len(chars):
        raise ValueError(f"CharNgramLM: alphabet={''.join(chars)!r} repeats a character")
    return chars
