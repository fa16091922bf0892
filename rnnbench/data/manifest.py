"""A dataset from a manifest: a TSV of `audio path <TAB> transcript`, one utterance a line.

  load("manifest:/path/to/list.tsv") -> Dataset (task "ctc", one split: "test")

Paths are relative to the manifest's own directory (absolute paths are kept). Lines that are
empty or start with `#` are skipped; a header line `path<TAB>transcript` is allowed. Audio in
any format and rate soundfile reads (WAV, FLAC, OGG, ...) is mixed to mono and resampled to
16 kHz. Transcripts are lower-cased and must use the CTC alphabet (a-z, space, apostrophe).
"""

from __future__ import annotations

import os

from rnnbench.data import CTC_ALPHABET, Dataset, Split, audio


def read_manifest(path: str) -> tuple[list[str], list[str]]:
    """-> (absolute audio paths, transcripts); ValueError naming the file and line if bad."""
    if not os.path.isfile(path):
        raise ValueError(
            f"manifest {path} does not exist (expected a TSV: audio path, tab, transcript)"
        )
    base = os.path.dirname(os.path.abspath(path))
    paths, texts = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n\r")
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.split("\t")
            if n == 1 and [c.strip().lower() for c in cols] == ["path", "transcript"]:
                continue
            if len(cols) != 2 or not cols[0].strip():
                raise ValueError(
                    f"{path} line {n}: expected 'audio path<TAB>transcript', got {line[:80]!r}"
                )
            text = " ".join(cols[1].lower().split())
            bad = sorted(set(text) - set(CTC_ALPHABET))
            if not text or bad:
                raise ValueError(
                    f"{path} line {n}: transcript {cols[1]!r} is empty or has "
                    f"characters {bad} outside a-z, space and apostrophe"
                )
            paths.append(os.path.join(base, cols[0].strip()))
            texts.append(text)
    if not paths:
        raise ValueError(f"manifest {path} lists no utterances")
    return paths, texts


def load_manifest(
    *, data_dir=None, protocol: int = 12, seed: int = 0, cache_dir=None, path: str | None = None
) -> Dataset:
    """The manifest at `path` as a one-split ("test") CTC dataset; a bad audio file is an
    error naming it and the manifest."""
    path = path or data_dir
    if not path:
        raise ValueError("a manifest dataset needs its path: dataset='manifest:/path/list.tsv'")
    paths, texts = read_manifest(path)
    clips = []
    for p in paths:
        try:
            clips.append(audio.read_wav(p))
        except audio.AudioError as e:
            raise ValueError(f"manifest {path}: {e}") from None
    split = Split(clips, None, texts, [os.path.basename(p) for p in paths])
    return Dataset(f"manifest:{path}", "ctc", list(CTC_ALPHABET), {"test": split})
