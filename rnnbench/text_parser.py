"""Spoken language understanding, the pipeline's second half: transcript -> meaning, learnt.

  parser = TextParser().fit(train_transcripts, train_meanings)
  parser.parse_all(["set a timer for five minutes"]) -> [{"intent": "set_timer", "slots": {...}}]

`TextEncoder`: words, each the mean embedding of its hashed character n-grams (fastText's
pieces, so a recogniser's misspelt word still looks like the word) -> bidirectional GRU over the
words -> masked attention pooling with one query per output head -> one linear head for the
intent and one per slot name (`slu.MeaningHeads`; value id 0 = none). The
outputs have the shapes of `slu.IntentModel`'s, and the loss is the intent objective's
(`objectives.intent.meaning_loss`), trained with Adam on the training transcripts. Parsing
takes the intent's argmax, then the argmax of each of that intent's slots.

It never reads the grammar: `phrases.parse` is the oracle; this is what a pipeline can learn.
A bag of n-grams with one logistic regression per slot was tried first and confused position-
bound slots ("what is eight minus twelve": a = 8, b = 12), which attention over a BiGRU reads.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from rnnbench import attention, layers, slu
from rnnbench.data import meanings as meanings_lib
from rnnbench.objectives.intent import meaning_loss, meaning_scores

Array = jax.Array
BUCKETS = 1 << 14  # hashed word pieces
PIECES = 48  # pieces kept per word (a 14-letter word has 45)


def word_pieces(word: str) -> list[str]:
    """The word itself and its character 3..5-grams with boundary marks (fastText's): "hi" ->
    ["<hi>", "<hi", "hi>"]; a misspelt word shares most of them with the word."""
    w = f"<{word}>"
    return [w] + [w[i : i + n] for n in (3, 4, 5) for i in range(len(w) - n + 1) if n < len(w)]


def encode_text(texts: Sequence[str], width: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (piece ids int32 [N, width, PIECES], 1..BUCKETS hashed, 0 = padding; words [N]).
    Words beyond `width` are cut, pieces beyond PIECES per word too."""
    ids = np.zeros((len(texts), width, PIECES), np.int32)
    lengths = np.zeros(len(texts), np.int32)
    for r, t in enumerate(texts):
        words = t.split()[:width]
        lengths[r] = len(words)
        for k, word in enumerate(words):
            pieces = [1 + zlib.crc32(p.encode()) % BUCKETS for p in word_pieces(word)][:PIECES]
            ids[r, k, : len(pieces)] = pieces
    return ids, lengths


class HeadPooling(nnx.Module):
    """Masked attention pooling with one learnt query per output head (a shared projection):
    h [batch, T, D], lengths [batch] -> [batch, heads, D]."""

    def __init__(self, features: int, hidden: int, heads: int, *, rngs: nnx.Rngs):
        self.proj = nnx.Linear(features, hidden, rngs=rngs)
        self.queries = nnx.Param(
            jax.random.normal(rngs.params(), (hidden, heads)) / np.sqrt(hidden)
        )

    def __call__(self, h: Array, lengths: Array) -> Array:
        mask = attention.valid_mask(lengths, h.shape[1])[..., None]  # [B, T, 1]
        scores = jnp.tanh(self.proj(h)) @ self.queries[...]  # [B, T, heads]
        weights = jax.nn.softmax(jnp.where(mask, scores, -jnp.inf), axis=1, where=mask)
        return jnp.einsum("bth,btd->bhd", jnp.where(mask, weights, 0.0), h)


class TextEncoder(nnx.Module):
    """pieces [batch, words, PIECES] -> {"intent": [batch, I], "slots": [batch, S, V]}: each
    word is the mean embedding of its pieces (module docstring)."""

    def __init__(
        self,
        slot_sizes: Sequence[int],
        num_intents: int,
        *,
        embed: int = 64,
        hidden: int = 128,
        rngs: nnx.Rngs,
    ):
        self.embed = nnx.Embed(BUCKETS + 1, embed, rngs=rngs)
        self.rnn = layers.build("gru", embed, hidden, bidirectional=True, rngs=rngs)
        d = self.rnn.out_features
        self.pool = HeadPooling(d, hidden, 1 + len(slot_sizes), rngs=rngs)
        self.heads = slu.MeaningHeads(d, num_intents, slot_sizes, rngs=rngs)

    def __call__(self, pieces: Array, lengths: Array) -> dict:
        real = (pieces > 0)[..., None]
        words = (self.embed(pieces) * real).sum(2) / jnp.maximum(real.sum(2), 1)
        h, _ = self.rnn(words, lengths)
        return self.heads(self.pool(h, lengths))


class TextParser:
    """Transcripts -> meanings of `codec`'s schema, learnt from (transcript, meaning) pairs."""

    def __init__(
        self,
        codec: meanings_lib.MeaningCodec | None = None,
        *,
        hidden: int = 128,
        steps: int = 600,
        batch_size: int = 64,
        learning_rate: float = 1e-2,
        seed: int = 0,
    ):
        self.codec = codec or meanings_lib.synth_phrases_codec()
        self.hidden, self.steps, self.batch_size = hidden, steps, batch_size
        self.learning_rate, self.seed = learning_rate, seed
        self.width = 0  # padded text length (words), set by `fit`

    def fit(self, texts: Sequence[str], meanings: Sequence[dict]) -> TextParser:
        """Learns from training transcripts and their meanings (ValueError naming an example
        whose meaning is outside the schema). Deterministic given `seed`."""
        if len(texts) != len(meanings) or not len(texts):
            raise ValueError(
                f"TextParser.fit needs one meaning per transcript and at least "
                f"one of each, got {len(texts)} transcripts and {len(meanings)} "
                "meanings"
            )
        encoded = []
        for i, (t, m) in enumerate(zip(texts, meanings)):
            try:
                encoded.append(self.codec.encode(m))
            except ValueError as e:
                raise ValueError(f"training example {i} ({t!r}): {e}") from None
        intents = np.array([e[0] for e in encoded], np.int32)
        slots = np.stack([e[1] for e in encoded]).astype(np.int32)
        self.width = -(-max(len(t.split()) for t in texts) // 8) * 8
        pieces, lengths = map(jnp.asarray, encode_text(texts, self.width))
        intents, slots = jnp.asarray(intents), jnp.asarray(slots)
        mask = self.codec.slot_mask

        model = TextEncoder(
            self.codec.slot_sizes,
            len(self.codec.intents),
            hidden=self.hidden,
            rngs=nnx.Rngs(self.seed),
        )
        self.graphdef, params = nnx.split(model, nnx.Param)
        tx = optax.adam(optax.cosine_decay_schedule(self.learning_rate, self.steps))
        opt_state = tx.init(params)

        @jax.jit
        def step(params, opt_state, idx):
            def loss_fn(p):
                out = nnx.merge(self.graphdef, p)(pieces[idx], lengths[idx])
                return meaning_loss(out, intents[idx], slots[idx], mask).mean()

            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        rng = np.random.default_rng(self.seed)
        bs = min(self.batch_size, len(texts))
        self.losses = []
        for _ in range(self.steps):
            idx = rng.choice(len(texts), bs, replace=False)
            params, opt_state, loss = step(params, opt_state, idx)
            self.losses.append(loss)
        self.losses = [float(x) for x in self.losses]
        self.params = params
        return self

    def outputs(self, texts: Sequence[str], batch_size: int = 256) -> dict:
        """Raw outputs for `texts`: {"intent": [N, I], "slots": [N, S, V]} (numpy)."""
        if not self.width:
            raise ValueError("TextParser: call fit() before parsing")
        width = max(self.width, -(-max((len(t.split()) for t in texts), default=1) // 8) * 8)
        apply = jax.jit(lambda p, c, n: nnx.merge(self.graphdef, p)(c, n))
        parts = []
        for s in range(0, len(texts), batch_size):
            chunk = list(texts[s : s + batch_size])
            chunk += [""] * (batch_size - len(chunk))  # one shape per width
            pieces, lengths = encode_text(chunk, width)
            parts.append(jax.device_get(apply(self.params, pieces, lengths)))
        return {k: np.concatenate([p[k] for p in parts])[: len(texts)] for k in parts[0]}

    def predict_ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> (intent ids [N], slot value ids [N, S])."""
        out = self.outputs(texts)
        return out["intent"].argmax(-1), out["slots"].argmax(-1)

    def parse_all(self, texts: Sequence[str]) -> list[dict]:
        intents, slots = self.predict_ids(texts)
        return [self.codec.decode(i, s) for i, s in zip(intents, slots)]

    def score(self, texts: Sequence[str], meanings: Sequence[dict]) -> dict:
        """Exact-meaning, intent and slot accuracy of parsing `texts` against `meanings`."""
        ref = [self.codec.encode(m) for m in meanings]
        out = self.outputs(texts)
        batch = {
            "weights": np.ones(len(texts), np.float32),
            "intent": np.array([r[0] for r in ref], np.int32),
            "slots": np.stack([r[1] for r in ref]).astype(np.int32),
        }
        s = jax.device_get(meaning_scores(out, batch, self.codec.slot_mask))
        n = max(len(texts), 1)
        return {
            "meaning_accuracy": float(s["meaning_correct"]) / n,
            "intent_accuracy": float(s["intent_correct"]) / n,
            "slot_accuracy": float(s["slot_correct"].sum() / max(s["slot_count"].sum(), 1)),
        }
