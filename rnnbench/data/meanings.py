"""Meanings as ids: an utterance's intent and slots as the integers a model predicts.

  codec = MeaningCodec.from_schema(phrases.SCHEMA)     # or: CODEC, synth_phrases' schema
  intent, slots = codec.encode({"intent": "lights", "slots": {"action": "on", "room": "none"}})
  # intent: int in [0, I); slots: int32 [S], one value id per slot name of the WHOLE schema
  codec.decode(intent, slots) -> the meaning dict;  codec.format(meaning) -> "lights(action=on)"

Slot value id 0 means "none": the slot belongs to another intent, or the utterance leaves it
unsaid (the schema's value "none"). So one classifier head per slot name predicts every
utterance's value for it, and a meaning is right when the intent and that intent's slots are.
The batcher calls `encode` on each utterance's meaning (rnnbench.data.batching), the intent
model sizes its heads from `slot_sizes` (rnnbench.slu).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import numpy as np

NONE = "none"


@dataclasses.dataclass(frozen=True)
class MeaningCodec:
    """intents [I]; slot_names [S]; slot_values[s] = ("none", *values of slot s)."""

    schema: Mapping[str, Mapping[str, tuple[str, ...]]]
    intents: tuple[str, ...]
    slot_names: tuple[str, ...]
    slot_values: tuple[tuple[str, ...], ...]

    @classmethod
    def from_schema(cls, schema: Mapping[str, Mapping[str, tuple[str, ...]]]) -> MeaningCodec:
        """Slot names in order of first use; a name shared by intents gets the union of values."""
        values: dict[str, list[str]] = {}
        for slots in schema.values():
            for name, allowed in slots.items():
                vs = values.setdefault(name, [NONE])
                vs += [v for v in allowed if v not in vs]
        return cls(schema, tuple(schema), tuple(values), tuple(map(tuple, values.values())))

    @property
    def slot_sizes(self) -> tuple[int, ...]:
        """Number of value ids of each slot head (including 0 = none)."""
        return tuple(len(v) for v in self.slot_values)

    @functools.cached_property
    def slot_mask(self) -> np.ndarray:
        """bool [I, S]: slot s is part of intent i's meaning."""
        return np.array([[s in self.schema[i] for s in self.slot_names] for i in self.intents])

    @functools.cached_property
    def _ids(self) -> tuple[dict[str, int], ...]:
        return tuple({v: k for k, v in enumerate(vs)} for vs in self.slot_values)

    def check(self, meaning) -> None:
        """ValueError naming what is wrong unless `meaning` is in the schema."""
        if not isinstance(meaning, Mapping) or set(meaning) != {"intent", "slots"}:
            raise ValueError(f"a meaning is a dict with keys 'intent' and 'slots', got {meaning!r}")
        intent, slots = meaning["intent"], meaning["slots"]
        if intent not in self.schema:
            raise ValueError(
                f"meaning {dict(meaning)!r}: unknown intent {intent!r}; "
                f"known: {', '.join(self.intents)}"
            )
        want = self.schema[intent]
        if not isinstance(slots, Mapping) or set(slots) != set(want):
            raise ValueError(
                f"meaning {dict(meaning)!r}: intent {intent!r} has slots "
                f"{sorted(want)}, got {slots!r}"
            )
        for name, value in slots.items():
            if value not in want[name]:
                raise ValueError(
                    f"meaning {dict(meaning)!r}: slot {intent}.{name} = {value!r} "
                    f"is outside the schema; allowed: {', '.join(want[name])}"
                )

    def encode(self, meaning) -> tuple[int, np.ndarray]:
        """meaning -> (intent id, slot value ids int32 [S]); ValueError outside the schema."""
        self.check(meaning)
        slots = np.zeros(len(self.slot_names), np.int32)
        for s, name in enumerate(self.slot_names):
            if name in meaning["slots"]:
                slots[s] = self._ids[s][meaning["slots"][name]]
        return self.intents.index(meaning["intent"]), slots

    def decode(self, intent: int, slots) -> dict:
        """(intent id, slot value ids [S]) -> meaning: the intent's own slots, read from `slots`
        (a value id 0 reads "none", whether or not the schema allows it there)."""
        name = self.intents[int(intent)]
        return {
            "intent": name,
            "slots": {
                s: self.slot_values[k][int(slots[k])]
                for k, s in enumerate(self.slot_names)
                if s in self.schema[name]
            },
        }

    def format(self, meaning) -> str:
        """Compact text: "set_timer(number=25, unit=minutes)", "cancel()"; slots in schema
        order, "none" slots left out ("lights(action=on)")."""
        slots = meaning["slots"]
        order = [k for k in self.schema.get(meaning["intent"], {}) if k in slots]
        order += [k for k in slots if k not in order]
        said = ", ".join(f"{k}={slots[k]}" for k in order if slots[k] != NONE)
        return f"{meaning['intent']}({said})"


@functools.cache
def synth_phrases_codec() -> MeaningCodec:
    """The codec of synth_phrases (rnnbench.data.phrases.SCHEMA)."""
    from rnnbench.data import phrases

    return MeaningCodec.from_schema(phrases.SCHEMA)
