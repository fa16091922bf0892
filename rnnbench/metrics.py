"""Recognition metrics: greedy CTC decoding and error rates (CER/WER through jiwer)."""

from __future__ import annotations

import jiwer
import numpy as np


def ctc_greedy_collapse(best_path, blank: int = 0) -> np.ndarray:
    """Best path (frame-wise argmax ids, [time]) -> label ids: merge repeats, drop blanks."""
    path = np.asarray(best_path).reshape(-1)
    if path.size == 0:
        return path
    keep = np.concatenate([[True], path[1:] != path[:-1]]) & (path != blank)
    return path[keep]


def error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus-level character and word error rates (jiwer), e.g. {"cer": 0.05, "wer": 0.12}.

    An empty hypothesis counts as all deletions; empty references are not allowed.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("error_rates needs at least one reference")
    if any(not r.strip() for r in references):
        raise ValueError("error_rates: a reference transcript is empty")
    return {
        "cer": float(jiwer.cer(references, hypotheses)),
        "wer": float(jiwer.wer(references, hypotheses)),
    }
