"""In-process eSpeak NG speech synthesis through ctypes.

The PyPI package ``espeakng-loader`` ships ``libespeak-ng`` and its voice data.
``ESpeak().synth("seven", voice="en-us+m3", rate=160, pitch=50)`` returns an
int16 mono waveform at ``ESpeak.sample_rate`` (22,050 Hz), typically in ~1-2 ms
per word. libespeak-ng keeps global state, so all instances share one
initialised library (one per process).

Determinism: eSpeak draws breath/voicing noise from its own generator and libc
``rand()``; ``synth`` reseeds both before every call. It also keeps internal state
across calls (e.g. the pitch-flutter phase), so an utterance is bit-identical only
for the same sequence of calls since process start: callers that need exact
reproducibility (``synth.py``) render in fresh processes in a fixed order.
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_CHARS_UTF8 = 1
POS_CHARACTER = 1
# espeak_PARAMETER enum values.
_PARAMS = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_lock = threading.Lock()
_state: dict = {}


class ESpeakError(RuntimeError):
    """libespeak-ng could not be loaded or rejected a request."""


def _variants(data_path: str) -> list[str]:
    vdir = os.path.join(data_path, "voices", "!v")
    return sorted(f for f in os.listdir(vdir) if os.path.isfile(os.path.join(vdir, f)))


def _init() -> dict:
    if _state:
        return _state
    try:
        import espeakng_loader

        lib_path = espeakng_loader.get_library_path()
        data_path = espeakng_loader.get_data_path()
        lib = ctypes.CDLL(lib_path)
    except (ImportError, OSError, RuntimeError) as e:
        raise ESpeakError(
            "cannot load libespeak-ng from the 'espeakng-loader' package "
            f"({type(e).__name__}: {e}); install it with `pip install espeakng-loader`"
        ) from e
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    if hasattr(lib, "espeak_ng_SetRandSeed"):
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    libc = ctypes.CDLL(None)
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), 0)
    if rate <= 0:
        raise ESpeakError(f"espeak_Initialize failed (returned {rate}) with data path {data_path}")
    chunks: list[np.ndarray] = []

    def callback(wav, numsamples, events):
        if numsamples > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0

    cb = _SYNTH_CALLBACK(callback)  # must stay referenced while the library lives
    lib.espeak_SetSynthCallback(cb)
    _state.update(
        lib=lib,
        libc=libc,
        rate=rate,
        chunks=chunks,
        cb=cb,
        data_path=data_path,
        variants=_variants(data_path),
    )
    return _state


class ESpeak:
    """Thin wrapper: ``synth(text, voice, rate, pitch, pitch_range) -> int16 [n]``."""

    def __init__(self):
        with _lock:
            st = _init()
        self._st = st
        self.sample_rate: int = st["rate"]
        self.variants: list[str] = list(st["variants"])  # e.g. "m3", "f2", "klatt"

    def synth(
        self,
        text: str,
        *,
        voice: str = "en",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        volume: int = 100,
        wordgap: int = 0,
    ) -> np.ndarray:
        """Render ``text`` with ``voice`` ("en-us+m3": accent + variant); int16 [n] at 22.05 kHz.

        rate is words per minute (80..450), pitch and pitch_range are 0..100, wordgap is an
        extra pause between words in units of 10 ms.
        """
        lib = self._st["lib"]
        with _lock:
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ESpeakError(f"eSpeak NG rejected voice {voice!r}")
            for name, value in (
                ("rate", rate),
                ("pitch", pitch),
                ("range", pitch_range),
                ("volume", volume),
                ("wordgap", wordgap),
            ):
                lib.espeak_SetParameter(_PARAMS[name], int(value), 0)
            if hasattr(lib, "espeak_ng_SetRandSeed"):
                lib.espeak_ng_SetRandSeed(1)
            self._st["libc"].srand(1)
            chunks = self._st["chunks"]
            chunks.clear()
            data = text.encode("utf-8") + b"\0"
            err = lib.espeak_Synth(
                data, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None
            )
            if err != 0:
                raise ESpeakError(f"espeak_Synth failed with code {err} for text {text!r}")
            out = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
            chunks.clear()
        return out.astype(np.int16, copy=False)
