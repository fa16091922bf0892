"""Speech datasets: ``load(name, ...) -> Dataset`` with train/validation/test ``Split``s.

Every split holds int16 mono 16 kHz clips of variable length. Classification
datasets carry int32 ``labels``; CTC datasets carry ``transcripts`` over a
character alphabet (``CTC_ALPHABET``: a-z, space, apostrophe; id 0 = blank).
Spoken-language-understanding corpora also carry ``meanings``: one
``{"intent": str, "slots": {name: value}}`` per utterance (schema: phrases.SCHEMA).

Known names: synth_commands, synth_digits, synth_phrases, synth_recall, speech_commands,
fsdd, fsdd_digits, tfds:speech_commands.
"""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np

SAMPLE_RATE = 16000
CTC_ALPHABET: list[str] = list("abcdefghijklmnopqrstuvwxyz '")
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@dataclasses.dataclass
class Split:
    """One split. audio: N int16 [n_i] arrays; labels: int32 [N] or None; meanings: N dicts."""

    audio: list[np.ndarray]
    labels: np.ndarray | None
    transcripts: list[str] | None
    speakers: list[str]
    meanings: list[dict] | None = None

    def __len__(self) -> int:
        return len(self.audio)


@dataclasses.dataclass
class Dataset:
    name: str
    task: str  # "classify" or "ctc"
    classes: list[str]  # class names, or the CTC alphabet without the blank
    splits: dict[str, Split]
    sample_rate: int = SAMPLE_RATE

    def encode(self, text: str) -> np.ndarray:
        """ctc: text -> int32 [L] ids in 1..len(classes); classify: class name -> int32 [1]."""
        if self.task == "classify":
            return np.array([self.classes.index(text)], np.int32)
        table = {c: i + 1 for i, c in enumerate(self.classes)}
        try:
            return np.array([table[c] for c in text], np.int32)
        except KeyError as e:
            raise ValueError(
                f"{self.name}: character {e.args[0]!r} of {text!r} is not in the "
                f"alphabet {''.join(self.classes)!r}"
            ) from None

    def decode(self, ids) -> str:
        """ctc: label ids (0 = blank, skipped) -> text; classify: class id -> class name."""
        ids = np.asarray(ids).reshape(-1)
        if self.task == "classify":
            return self.classes[int(ids[0])]
        return "".join(self.classes[int(i) - 1] for i in ids if int(i) > 0)


# name -> "module:function"; each function takes (data_dir, protocol, seed, cache_dir, **options).
_REGISTRY = {
    "synth_commands": "rnnbench.data.synth:synth_commands",
    "synth_digits": "rnnbench.data.synth:synth_digits",
    "synth_phrases": "rnnbench.data.phrases:synth_phrases",
    "synth_recall": "rnnbench.data.recall:synth_recall",
    "speech_commands": "rnnbench.data.speech_commands:load_speech_commands",
    "fsdd": "rnnbench.data.fsdd:load_fsdd",
    "fsdd_digits": "rnnbench.data.fsdd:load_fsdd_digits",
    "tfds:speech_commands": "rnnbench.data.tfds:load_tfds_speech_commands",
}
NAMES = tuple(_REGISTRY)


def load(
    name: str,
    *,
    data_dir: str | None = None,
    protocol: int = 12,
    seed: int = 0,
    cache_dir=None,
    **options,
) -> Dataset:
    """Load dataset ``name``; ``options`` are forwarded to its loader (sizes, split=...).
    ``manifest:PATH`` loads a TSV of audio paths and transcripts (rnnbench/data/manifest.py)."""
    if name.startswith("manifest:"):
        from rnnbench.data import manifest

        return manifest.load_manifest(path=name[len("manifest:") :])
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}, manifest:PATH")
    module, fn = _REGISTRY[name].split(":")
    loader = getattr(importlib.import_module(module), fn)
    return loader(data_dir=data_dir, protocol=protocol, seed=seed, cache_dir=cache_dir, **options)
