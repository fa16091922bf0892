"""Spoken commands with a meaning: the ``synth_phrases`` corpus and the grammar that writes it.

  load("synth_phrases", split="voices" | "phrasings") -> Dataset (task "ctc")

Every utterance has a transcript (``Split.transcripts``, over ``CTC_ALPHABET``, numbers
spelled out: "set a timer for twenty five minutes") and a meaning (``Split.meanings``):
``{"intent": "set_timer", "slots": {"number": "25", "unit": "minutes"}}``.

Grammar. ``SCHEMA`` maps each of the 10 intents to its slots and each slot to its allowed
values (strings; numbers in decimal; ``"none"`` where a slot may go unsaid). Every intent's
meaning carries all of its slots; slot names are unique across intents (one classifier head
per slot name works). ``phrasings(meaning)`` lists every way the grammar says a meaning (at
least 3, written out as plain code per intent below); a meaning is in the
grammar when it is in the schema and has phrasings (e.g. a volume ``level`` is said only with
``direction="set"``). ``check_meaning`` raises a ValueError naming what is wrong;
``all_utterances()`` enumerates the whole grammar, in which every transcript has exactly one
meaning, so ``parse(text)`` inverts it (an oracle, for tests and upper bounds).

Sampling (PHRASES_VERSION 1), deterministic from (seed, split, index): intents exactly
balanced per split (round robin, then shuffled), a meaning uniform over the intent's meanings,
then a phrasing uniform over the meaning's phrasings allowed in the split.

Splits. Voices as in ``synth_commands`` (synth.voice_partition: 16 test, 16 validation, the
rest of eSpeak's variants for training, disjoint). For one seed and sizes both kinds hold the
same meanings and voices, utterance by utterance; only the phrasings differ.
- ``split="voices"`` (default): test measures unseen voices; phrasings may repeat across splits.
- ``split="phrasings"``: the phrasings of every meaning are ordered by a seeded hash; the first
  is said only in test, the second only in validation, the rest only in training. No test or
  validation transcript occurs in training, yet every meaning and every slot value can be heard
  in training (each meaning has >= 3 phrasings), and voices stay unseen too.

Rendering (synth.py's recipe): one eSpeak utterance with random accent, rate 130-230 wpm,
pitch, pitch range and an extra inter-word gap of 0-40 ms; 0.1-0.3 s of noise-only padding at
each end; coloured noise at 10-30 dB SNR. Every clip lasts 1-6 s: short speech gets longer
padding; speech over 5.8 s (the longest transcripts in the slowest voices) is rendered again
1.2x faster until it fits, and the padding then shrinks to the 6 s left. Default sizes:
train 3000, validation 400, test 400.

Caching as in synth.py; the spec holds the seed, sizes, split, both recipe versions and a
fingerprint of the grammar (any edit to it rebuilds).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json

import numpy as np

from rnnbench.data import CTC_ALPHABET, SAMPLE_RATE, Dataset, Split, synth
from rnnbench.data.audio import resample, to_int16
from rnnbench.data.espeak import ESpeak

PHRASES_VERSION = 1
SPLIT_KINDS = ("voices", "phrasings")
MIN_SECONDS, MAX_SECONDS = 1.0, 6.0  # clip length
MIN_PAD_SECONDS = 0.1  # noise-only padding at each end, at least
CLEAN_PAD_SECONDS = 0.1  # silence at each end of a one-voice (voice=...) clip

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def say_number(n: int) -> str:
    """0..99 in words: 25 -> "twenty five"."""
    if not 0 <= n <= 99:
        raise ValueError(f"say_number: {n} is outside 0..99")
    if n < 20:
        return _ONES[n]
    return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])


def _numbers(values) -> tuple[str, ...]:
    return tuple(str(n) for n in values)


_ROOMS = (
    "kitchen",
    "bedroom",
    "living room",
    "bathroom",
    "hallway",
    "garage",
    "office",
    "dining room",
    "basement",
    "nursery",
    "attic",
    "porch",
)
_CITIES = (
    "london",
    "paris",
    "tokyo",
    "berlin",
    "madrid",
    "boston",
    "chicago",
    "seattle",
    "toronto",
    "sydney",
    "dublin",
    "rome",
    "cairo",
    "moscow",
    "denver",
    "vienna",
)
_DAYS = (
    "today",
    "tomorrow",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "weekend",
)
_GENRES = (
    "jazz",
    "rock",
    "pop",
    "classical",
    "blues",
    "hip hop",
    "country",
    "reggae",
    "folk",
    "metal",
    "soul",
    "disco",
)
_ARTISTS = ("mozart", "beethoven", "bach", "chopin", "vivaldi", "brahms", "schubert", "handel")
_FAMILY = ("mom", "dad", "grandma", "grandpa")
_CONTACTS = _FAMILY + (
    "alice",
    "bob",
    "charlie",
    "david",
    "emma",
    "grace",
    "henry",
    "jack",
    "lucy",
    "olivia",
    "peter",
    "sophie",
)
_ITEMS = (
    "milk",
    "eggs",
    "bread",
    "butter",
    "cheese",
    "apples",
    "bananas",
    "coffee",
    "tea",
    "rice",
    "pasta",
    "tomatoes",
    "onions",
    "potatoes",
    "chicken",
    "sugar",
    "flour",
    "yogurt",
    "orange juice",
    "carrots",
)
_MATH_WORDS = {"add": "plus", "subtract": "minus", "multiply": "times", "divide": "divided by"}

# intent -> slot -> allowed values. Every meaning of an intent has exactly these slots.
SCHEMA: dict[str, dict[str, tuple[str, ...]]] = {
    "set_timer": {
        "number": _numbers([*range(1, 21), 25, 30, 40, 45, 50, 60, 90]),
        "unit": ("seconds", "minutes", "hours"),
    },
    "set_alarm": {
        "hour": _numbers(range(1, 13)),
        "minute": ("00", "15", "30", "45"),
        "period": ("morning", "afternoon", "evening", "none"),
    },
    "lights": {"action": ("on", "off", "dim"), "room": _ROOMS + ("none",)},
    "volume": {
        "direction": ("up", "down", "set", "mute"),
        "level": _numbers(range(11)) + ("none",),
    },
    "play_music": {"genre": _GENRES + ("none",), "artist": _ARTISTS + ("none",)},
    "weather": {"city": _CITIES, "day": _DAYS + ("none",)},
    "ask_math": {"a": _numbers(range(21)), "op": tuple(_MATH_WORDS), "b": _numbers(range(21))},
    "call": {"contact": _CONTACTS},
    "add_item": {"item": _ITEMS},
    "cancel": {},
}
INTENTS = tuple(SCHEMA)


# ----------------------------------------------------------------------------- the grammar
# One function per intent: slots -> every phrasing (an empty list: not a meaning of the grammar).


def _set_timer(s: dict) -> list[str]:
    n = int(s["number"])
    w, unit = say_number(n), s["unit"]
    said = unit[:-1] if n == 1 else unit  # "one minute", "two minutes"
    a = "an" if w.startswith(("eight", "eleven")) else "a"
    return [
        f"set a timer for {w} {said}",
        f"set {a} {w} {unit[:-1]} timer",
        f"start a timer for {w} {said}",
        f"timer for {w} {said}",
        f"count down {w} {said}",
        f"remind me in {w} {said}",
        f"can you set a timer for {w} {said}",
    ]


def _set_alarm(s: dict) -> list[str]:
    h = int(s["hour"])
    w = say_number(h)
    times = {
        "00": [f"{w} o'clock", w],
        "15": [f"{w} fifteen", f"quarter past {w}"],
        "30": [f"{w} thirty", f"half past {w}"],
        "45": [f"{w} forty five", f"quarter to {say_number(h % 12 + 1)}"],
    }[s["minute"]]
    when = "" if s["period"] == "none" else f" in the {s['period']}"
    return [
        f"{lead} {t}{when}"
        for lead in ("set an alarm for", "wake me up at", "set my alarm for")
        for t in times
    ]


def _lights(s: dict) -> list[str]:
    act, room = s["action"], s["room"]
    the = "" if room == "none" else f" {room}"  # "the kitchen lights"
    where = "" if room == "none" else f" in the {room}"
    if act == "dim":
        return [
            f"dim the{the} lights",
            f"dim the lights{where}",
            f"turn down the lights{where}",
            f"make the{the} lights dimmer",
            f"can you dim the{the} lights",
        ]
    return [
        f"turn the{the} lights {act}",
        f"turn {act} the{the} lights",
        f"switch {act} the lights{where}",
        f"{room + ' ' if the else ''}lights {act}",
        f"can you turn {act} the light{where}",
        f"please switch the{the} light {act}",
    ]


def _volume(s: dict) -> list[str]:
    d, level = s["direction"], s["level"]
    if (d == "set") != (level != "none"):
        return []
    if d == "set":
        n = say_number(int(level))
        return [
            f"set the volume to {n}",
            f"volume {n}",
            f"change the volume to {n}",
            f"put the volume on {n}",
            f"turn the volume to {n}",
        ]
    return {
        "up": [
            "turn it up",
            "turn the volume up",
            "volume up",
            "louder please",
            "make it louder",
            "turn up the volume",
            "increase the volume",
        ],
        "down": [
            "turn it down",
            "turn the volume down",
            "volume down",
            "quieter please",
            "make it quieter",
            "turn down the volume",
            "lower the volume",
        ],
        "mute": [
            "mute",
            "mute the sound",
            "mute the speaker",
            "turn the sound off",
            "silence please",
        ],
    }[d]


def _play_music(s: dict) -> list[str]:
    g, a = s["genre"], s["artist"]
    if (g == "none") == (a == "none"):  # exactly one of them is said
        return []
    if g != "none":
        return [
            f"play some {g}",
            f"play {g} music",
            f"put on some {g}",
            f"i want to listen to {g}",
            f"play me some {g} music",
            f"can you play some {g}",
        ]
    return [
        f"play something by {a}",
        f"play {a}",
        f"put on some {a}",
        f"i want to listen to {a}",
        f"play me some music by {a}",
        f"play a piece by {a}",
    ]


def _weather(s: dict) -> list[str]:
    city, day = s["city"], s["day"]
    when = {"none": "", "weekend": " this weekend"}.get(
        day, f" {day}" if day in ("today", "tomorrow") else f" on {day}"
    )
    return [
        f"what's the weather in {city}{when}",
        f"what is the weather like in {city}{when}",
        f"will it rain in {city}{when}",
        f"weather forecast for {city}{when}",
        f"do i need an umbrella in {city}{when}",
        f"how hot will it be in {city}{when}",
    ]


def _ask_math(s: dict) -> list[str]:
    a, op, b = say_number(int(s["a"])), s["op"], say_number(int(s["b"]))
    w = _MATH_WORDS[op]
    own = {
        "add": [f"add {a} and {b}", f"what is the sum of {a} and {b}"],
        "subtract": [f"subtract {b} from {a}", f"take {b} away from {a}"],
        "multiply": [f"multiply {a} by {b}", f"what is {a} multiplied by {b}"],
        "divide": [f"divide {a} by {b}", f"what is {a} over {b}"],
    }[op]
    return [
        f"what is {a} {w} {b}",
        f"what's {a} {w} {b}",
        f"how much is {a} {w} {b}",
        f"calculate {a} {w} {b}",
    ] + own


def _call(s: dict) -> list[str]:
    c = s["contact"]
    names = [f"my {c}", c] if c in _FAMILY else [c]
    return [
        p
        for n in names
        for p in (
            f"call {n}",
            f"phone {n}",
            f"give {n} a call",
            f"can you call {n} please",
            f"i want to talk to {n}",
        )
    ]


def _add_item(s: dict) -> list[str]:
    i = s["item"]
    return [
        f"add {i} to my shopping list",
        f"put {i} on the shopping list",
        f"we need more {i}",
        f"remind me to buy {i}",
        f"we're out of {i}",
        f"add {i} to the list",
    ]


def _cancel(s: dict) -> list[str]:
    return ["cancel", "stop", "never mind", "cancel that", "forget it", "stop that please"]


_GRAMMAR = {
    "set_timer": _set_timer,
    "set_alarm": _set_alarm,
    "lights": _lights,
    "volume": _volume,
    "play_music": _play_music,
    "weather": _weather,
    "ask_math": _ask_math,
    "call": _call,
    "add_item": _add_item,
    "cancel": _cancel,
}


def _check_schema(meaning) -> None:
    if not isinstance(meaning, dict) or set(meaning) != {"intent", "slots"}:
        raise ValueError(f"a meaning is a dict with keys 'intent' and 'slots', got {meaning!r}")
    intent, slots = meaning["intent"], meaning["slots"]
    if intent not in SCHEMA:
        raise ValueError(
            f"meaning {meaning!r}: unknown intent {intent!r}; known: {', '.join(INTENTS)}"
        )
    if not isinstance(slots, dict) or set(slots) != set(SCHEMA[intent]):
        raise ValueError(
            f"meaning {meaning!r}: intent {intent!r} has slots "
            f"{sorted(SCHEMA[intent])}, got {slots!r}"
        )
    for name, value in slots.items():
        if value not in SCHEMA[intent][name]:
            raise ValueError(
                f"meaning {meaning!r}: slot {intent}.{name} = {value!r} is outside "
                f"the schema; allowed: {', '.join(SCHEMA[intent][name])}"
            )


def phrasings(meaning: dict) -> list[str]:
    """Every transcript the grammar says ``meaning`` with, in a fixed order (checked first)."""
    _check_schema(meaning)
    return list(dict.fromkeys(_GRAMMAR[meaning["intent"]](meaning["slots"])))


def check_meaning(meaning) -> None:
    """ValueError naming the problem unless ``meaning`` is in the schema and the grammar."""
    if not phrasings(meaning):
        raise ValueError(
            f"meaning {meaning!r} is in the schema but no phrasing says it "
            "(see the grammar in rnnbench/data/phrases.py)"
        )


@functools.cache
def _meanings(intent: str) -> tuple[str, ...]:
    """Every meaning of ``intent`` as sorted-key JSON (cached; see ``meanings``)."""
    names = list(SCHEMA[intent])
    out = []
    for values in itertools.product(*(SCHEMA[intent][n] for n in names)):
        m = {"intent": intent, "slots": dict(zip(names, values, strict=True))}
        if phrasings(m):
            out.append(json.dumps(m, sort_keys=True))
    return tuple(out)


def meanings(intent: str) -> list[dict]:
    """Every meaning of ``intent`` the grammar can say, in schema order."""
    if intent not in SCHEMA:
        raise ValueError(f"unknown intent {intent!r}; known: {', '.join(INTENTS)}")
    return [json.loads(m) for m in _meanings(intent)]


def all_utterances():
    """Yields (transcript, meaning) for the whole grammar, intent by intent."""
    for intent in INTENTS:
        for m in meanings(intent):
            for text in phrasings(m):
                yield text, m


@functools.cache
def _inverse() -> dict[str, str]:
    return {text: json.dumps(m, sort_keys=True) for text, m in all_utterances()}


def parse(text: str) -> dict:
    """The meaning of a grammar transcript (exact match; ValueError for any other text)."""
    if text not in _inverse():
        raise ValueError(f"{text!r} is not a phrasing of the synth_phrases grammar")
    return json.loads(_inverse()[text])


@functools.cache
def grammar_fingerprint() -> str:
    """sha1 over the schema and every (transcript, meaning) of the grammar."""
    h = hashlib.sha1(json.dumps(SCHEMA, sort_keys=True).encode())
    for text, m in all_utterances():
        h.update(f"{text}\t{json.dumps(m, sort_keys=True)}\n".encode())
    return h.hexdigest()


def split_phrasings(texts: list[str], seed: int) -> dict[str, list[str]]:
    """One meaning's phrasings -> {split: phrasings said only there} (``split="phrasings"``).

    Ordered by sha1(seed, text): the first for test, the second for validation, the rest for
    training. Needs >= 3 phrasings (every meaning of the grammar has them).
    """
    if len(texts) < 3:
        raise ValueError(f"split='phrasings' needs >= 3 phrasings per meaning, got {texts!r}")
    order = sorted(texts, key=lambda t: hashlib.sha1(f"{seed}:{t}".encode()).digest())
    return {"test": order[:1], "validation": order[1:2], "train": order[2:]}


def sample_utterance(
    seed: int, split: str, index: int, intent: str, kind: str = "voices"
) -> tuple[str, dict]:
    """(transcript, meaning) of utterance ``index`` of ``split``, given its intent.

    ``kind``: "voices" (any phrasing) or "phrasings" (only those ``split_phrasings`` gives
    ``split``).
    """
    if split not in synth.SPLITS or kind not in SPLIT_KINDS:
        raise ValueError(
            f"sample_utterance: split must be one of {synth.SPLITS} and kind one "
            f"of {SPLIT_KINDS}, got split={split!r}, kind={kind!r}"
        )
    rng = np.random.default_rng([seed, synth.SPLITS.index(split), index, 271828])
    ms = _meanings(intent)
    meaning = json.loads(ms[rng.integers(len(ms))])
    texts = phrasings(meaning)
    if kind == "phrasings":
        texts = split_phrasings(texts, seed)[split]
    return texts[rng.integers(len(texts))], meaning


# ----------------------------------------------------------------------------- the corpus


def _phrase_clip(
    es: ESpeak, seed: int, split_id: int, i: int, text: str, variant: str
) -> np.ndarray:
    """int16 [n] clip of ``text``: 1-6 s of padded, noisy speech."""
    rng = np.random.default_rng([seed, split_id, i])
    longest = MAX_SECONDS - 2 * MIN_PAD_SECONDS
    speech = synth.render_speech(
        es, rng, text, variant, max_seconds=longest, wordgap=int(rng.integers(0, 5))
    )
    if speech.shape[0] > longest * SAMPLE_RATE:
        raise RuntimeError(
            f"synth_phrases: {text!r} with voice {variant!r} lasts "
            f"{speech.shape[0] / SAMPLE_RATE:.2f} s even at eSpeak's fastest rate"
        )
    lead, trail = (int(rng.uniform(MIN_PAD_SECONDS, 0.3) * SAMPLE_RATE) for _ in range(2))
    short = int(MIN_SECONDS * SAMPLE_RATE) - (lead + speech.shape[0] + trail)
    if short > 0:  # too short: lengthen the padding
        extra = int(rng.integers(0, short + 1))
        lead, trail = lead + extra, trail + short - extra
    room = int(MAX_SECONDS * SAMPLE_RATE) - speech.shape[0]
    if lead + trail > room:  # too long: shorten the padding, keeping its ratio
        lead = lead * room // (lead + trail)
        trail = room - lead
    clip = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(trail, np.float32)])
    return to_int16(synth.add_noise(rng, clip, float(np.sqrt(np.mean(speech**2)))))


def _clean_clip(es: ESpeak, text: str, voice: str) -> np.ndarray:
    """int16 [n] clip of ``text`` in one fixed, clean voice (``voice=``): 175 wpm, pitch 50,
    range 50, trimmed, peak at -3 dBFS, CLEAN_PAD_SECONDS of silence at each end, no noise."""
    x = es.synth(text, voice=voice, rate=175, pitch=50, pitch_range=50)
    x = resample(x.astype(np.float32) / 32768.0, es.sample_rate, SAMPLE_RATE)
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak <= 0:
        raise RuntimeError(f"eSpeak produced silence for {text!r} with voice {voice!r}")
    idx = np.nonzero(np.abs(x) > 0.02 * peak)[0]
    x = x[idx[0] : idx[-1] + 1] * (10 ** (-3 / 20) / peak)
    pad = np.zeros(int(CLEAN_PAD_SECONDS * SAMPLE_RATE), np.float32)
    return to_int16(np.concatenate([pad, x, pad]))


def _clip(
    es: ESpeak, seed: int, split_id: int, i: int, text: str, variant: str, voice: str | None
) -> np.ndarray:
    return (
        _clean_clip(es, text, voice)
        if voice
        else _phrase_clip(es, seed, split_id, i, text, variant)
    )


def synth_phrases(
    *,
    data_dir=None,
    protocol: int = 12,
    seed: int = 0,
    cache_dir=None,
    train_size: int = 3000,
    validation_size: int = 400,
    test_size: int = 400,
    split: str = "voices",
    voice: str | None = None,
    use_cache: bool = True,
    num_workers: int | None = None,
) -> Dataset:
    """Spoken commands with transcripts and meanings (module docstring); CTC over CTC_ALPHABET.

    ``split``: "voices" (test = unseen voices) or "phrasings" (test = unseen voices saying
    transcripts never said in training). ``voice`` (e.g. "en-us+m2", accent + eSpeak variant):
    every utterance of every split is said by that one voice, clean (``_clean_clip``: fixed
    rate, pitch and range, no noise, 0.1 s of silence at each end), for speech synthesis; the
    transcripts are the same as without it, ``speakers`` holds the voice. ``data_dir`` and
    ``protocol`` are ignored.
    """
    if split not in SPLIT_KINDS:
        raise ValueError(f"synth_phrases: split must be one of {SPLIT_KINDS}, got {split!r}")
    if voice is not None and (not isinstance(voice, str) or not voice):
        raise ValueError(
            f"synth_phrases: voice must be an eSpeak voice such as 'en-us+m2', got {voice!r}"
        )
    sizes = synth.check_sizes(train_size, validation_size, test_size)
    spec = dict(
        name="synth_phrases",
        recipe=synth.RECIPE_VERSION,
        phrases=PHRASES_VERSION,
        grammar=grammar_fingerprint()[:12],
        block=synth.BLOCK,
        seed=seed,
        split=split,
        **sizes,
    )
    if voice:  # only then: the multi-voice corpus keeps its cache key
        spec["voice"] = voice

    def build() -> dict[str, Split]:
        voices = synth.voice_partition(ESpeak().variants, seed)
        plan = {}
        for split_id, s in enumerate(synth.SPLITS):
            lrng = np.random.default_rng([seed, split_id, 104729])
            intents = lrng.permutation(np.arange(sizes[s]) % len(INTENTS))
            speakers = synth.draw_speakers(lrng, voices[s], sizes[s])
            if voice:
                speakers = [voice] * sizes[s]
            said = [sample_utterance(seed, s, i, INTENTS[k], split) for i, k in enumerate(intents)]
            plan[s] = (said, speakers)
        items = [
            (seed, split_id, i, plan[s][0][i][0], plan[s][1][i], voice)
            for split_id, s in enumerate(synth.SPLITS)
            for i in range(sizes[s])
        ]
        audio = iter(synth.render_all(_clip, items, num_workers))
        return {
            s: Split(
                audio=[next(audio) for _ in range(sizes[s])],
                labels=None,
                transcripts=[t for t, _ in plan[s][0]],
                speakers=plan[s][1],
                meanings=[m for _, m in plan[s][0]],
            )
            for s in synth.SPLITS
        }

    splits = synth.cached_splits("synth_phrases", spec, cache_dir, use_cache, build)
    return Dataset("synth_phrases", "ctc", list(CTC_ALPHABET), splits)
