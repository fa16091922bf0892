"""Synthetic long-range memory tasks, generated on device from a PRNG key.

Each task is a small object with `batch(key, batch_size) -> dict` (pure JAX, jittable):

  inputs       [batch, time, num_inputs] float32
  lengths      [batch] int32 (all = time)
  weights      [batch] float32 ones
  targets      task "regress": [batch] float32 (read out from the last state)
               task "tag":     [batch, time] int32 per-step classes, with
  target_mask  [batch, time] float32, 1 where a step is scored ("tag" only)

and `baseline`: the loss of the best predictor that ignores the inputs (a task is "solved" when
the loss goes well below it). Batch k of training is `batch(fold_in(key, k))`: a pure function of
(seed, k), so resumed runs see the same data. Configs pick a task with `dataset = "task:<name>"`
and its parameters from `config.task`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Adding:
    """Adding problem (Hochreiter & Schmidhuber 1997; setup of Le et al. 2015).

    Two channels: values ~ U[0, 1] and markers (exactly two 1s, one in each half). Target: the
    sum of the two marked values; loss MSE. Predicting the mean (1.0) gives MSE 1/6 ~ 0.167.
    """

    length: int = 100
    name: str = "adding"
    task: str = "regress"
    num_inputs: int = 2
    num_outputs: int = 1
    baseline: float = 1.0 / 6.0

    @property
    def seq_len(self) -> int:
        return self.length

    def __post_init__(self):
        if not isinstance(self.length, int) or self.length < 2:
            raise ValueError(f"adding: length must be an int >= 2, got {self.length!r}")

    def batch(self, key: Array, batch_size: int) -> dict:
        kv, k1, k2 = jax.random.split(key, 3)
        t, half = self.length, self.length // 2
        values = jax.random.uniform(kv, (batch_size, t))
        first = jax.random.randint(k1, (batch_size,), 0, half)
        second = jax.random.randint(k2, (batch_size,), half, t)
        steps = jnp.arange(t)[None, :]
        markers = ((steps == first[:, None]) | (steps == second[:, None])).astype(jnp.float32)
        return {
            "inputs": jnp.stack([values, markers], axis=-1),
            "lengths": jnp.full((batch_size,), t, jnp.int32),
            "weights": jnp.ones((batch_size,), jnp.float32),
            "targets": (values * markers).sum(axis=1),
        }


def _one_hot_check(name: str, **ints) -> None:
    for k, (v, lo) in ints.items():
        if not isinstance(v, int) or v < lo:
            raise ValueError(f"{name}: {k} must be an int >= {lo}, got {v!r}")


class _SymbolRecall:
    """Shared by the recall tasks: one-hot inputs over the symbols plus noise and delimiter,
    per-step logits over the symbols, baseline log(num_symbols) (uniform guessing)."""

    num_symbols: int

    @property
    def num_inputs(self) -> int:
        return self.num_symbols + 2

    @property
    def num_outputs(self) -> int:
        return self.num_symbols

    @property
    def baseline(self) -> float:
        return math.log(self.num_symbols)


@dataclasses.dataclass(frozen=True)
class CopyMemory(_SymbolRecall):
    """Copy memory (Arjovsky, Shah & Bengio 2016): remember 10 symbols across T blanks.

    Inputs, one-hot over `num_symbols + 2` categories (symbols 0..7, blank 8, delimiter 9), total
    length T + 2 * copy_len:

      steps 0 .. copy_len-1                  the symbols, uniform over `num_symbols`
      steps copy_len .. copy_len+T-1          T blanks
      step  copy_len+T                        the delimiter (= the first recall step)
      steps copy_len+T+1 .. T+2*copy_len-1    blanks

    Targets: at recall step copy_len + T + j the j-th symbol. Only the copy_len recall steps are
    scored (`target_mask`), so the loss is cross-entropy per recall step and the baseline (guess
    uniformly) is log(num_symbols) = log 8 ~ 2.079; accuracy is per recalled symbol (chance 1/8).
    Symbol j must be carried T + copy_len steps.
    """

    length: int = 100
    copy_len: int = 10
    num_symbols: int = 8
    name: str = "copy"
    task: str = "tag"

    def __post_init__(self):
        _one_hot_check(
            "copy",
            length=(self.length, 0),
            copy_len=(self.copy_len, 1),
            num_symbols=(self.num_symbols, 2),
        )

    @property
    def seq_len(self) -> int:
        return self.length + 2 * self.copy_len

    def batch(self, key: Array, batch_size: int) -> dict:
        n, t, total = self.copy_len, self.length, self.seq_len
        blank, delim = self.num_symbols, self.num_symbols + 1
        symbols = jax.random.randint(key, (batch_size, n), 0, self.num_symbols)
        tokens = jnp.full((batch_size, total), blank, jnp.int32)
        tokens = tokens.at[:, :n].set(symbols).at[:, n + t].set(delim)
        targets = jnp.zeros((batch_size, total), jnp.int32).at[:, n + t :].set(symbols)
        mask = jnp.zeros((batch_size, total), jnp.float32).at[:, n + t :].set(1.0)
        return {
            "inputs": jax.nn.one_hot(tokens, self.num_inputs, dtype=jnp.float32),
            "lengths": jnp.full((batch_size,), total, jnp.int32),
            "weights": jnp.ones((batch_size,), jnp.float32),
            "targets": targets,
            "target_mask": mask,
        }


@dataclasses.dataclass(frozen=True)
class SelectiveCopy(_SymbolRecall):
    """Selective copying (Gu & Dao 2023, the Mamba paper): `num_tokens` symbols scattered at
    random positions among noise tokens, then recall them in order of appearance.

    Inputs, one-hot over `num_symbols + 2` categories (symbols, noise = num_symbols, delimiter =
    num_symbols + 1), total length T + num_tokens: steps 0..T-1 hold noise except at
    `num_tokens` distinct uniformly random positions, which hold symbols; step T is the delimiter
    (= the first recall step), then noise. Targets at recall step T + j: the j-th symbol in order
    of position. Only the recall steps are scored; baseline log(num_symbols). Unlike copy memory,
    where to look depends on the content (the gaps are random), so a fixed time-shift
    cannot solve it.
    """

    length: int = 100
    num_tokens: int = 4
    num_symbols: int = 8
    name: str = "selective"
    task: str = "tag"

    def __post_init__(self):
        _one_hot_check(
            "selective", num_tokens=(self.num_tokens, 1), num_symbols=(self.num_symbols, 2)
        )
        if not isinstance(self.length, int) or self.length < self.num_tokens:
            raise ValueError(
                f"selective: length must be an int >= num_tokens "
                f"({self.num_tokens}), got {self.length!r}"
            )

    @property
    def seq_len(self) -> int:
        return self.length + self.num_tokens

    def batch(self, key: Array, batch_size: int) -> dict:
        n, t, total = self.num_tokens, self.length, self.seq_len
        noise, delim = self.num_symbols, self.num_symbols + 1
        k_pos, k_sym = jax.random.split(key)
        # n distinct positions per row, in increasing order: the n smallest of T uniform keys
        pos = jnp.sort(
            jnp.argsort(jax.random.uniform(k_pos, (batch_size, t)), axis=1)[:, :n], axis=1
        )
        symbols = jax.random.randint(k_sym, (batch_size, n), 0, self.num_symbols)
        rows = jnp.arange(batch_size)[:, None]
        tokens = jnp.full((batch_size, total), noise, jnp.int32)
        tokens = tokens.at[rows, pos].set(symbols).at[:, t].set(delim)
        targets = jnp.zeros((batch_size, total), jnp.int32).at[:, t:].set(symbols)
        mask = jnp.zeros((batch_size, total), jnp.float32).at[:, t:].set(1.0)
        return {
            "inputs": jax.nn.one_hot(tokens, self.num_inputs, dtype=jnp.float32),
            "lengths": jnp.full((batch_size,), total, jnp.int32),
            "weights": jnp.ones((batch_size,), jnp.float32),
            "targets": targets,
            "target_mask": mask,
        }


TASKS: dict[str, Callable[..., object]] = {
    "adding": Adding,
    "copy": CopyMemory,
    "selective": SelectiveCopy,
}


def make(name: str, **params):
    """Builds a task by name, e.g. `make("adding", length=200)`."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}")
    try:
        return TASKS[name](**params)
    except TypeError as e:
        raise ValueError(f"bad parameters for task {name!r}: {e}") from None
