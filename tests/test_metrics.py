"""Recognition metrics (rnnbench.metrics): greedy CTC collapse and CER/WER on hand-counted cases."""

import numpy as np
import pytest

from rnnbench.metrics import ctc_greedy_collapse, error_rates


@pytest.mark.parametrize(
    "path,expected",
    [
        ([1, 1, 1], [1]),  # a repeat is one label
        ([1, 1, 0, 1, 2, 2, 0, 0, 3], [1, 1, 2, 3]),  # a blank between repeats keeps both
        ([0, 0, 3, 3, 0, 0], [3]),  # leading and trailing blanks dropped
        ([0, 0, 0, 0], []),  # all blank
        ([], []),  # no frames
        ([2, 3, 2, 3], [2, 3, 2, 3]),  # alternating labels are all kept
    ],
)
def test_ctc_greedy_collapse(path, expected):
    out = ctc_greedy_collapse(np.array(path, np.int32))
    assert out.tolist() == expected


def test_ctc_greedy_collapse_other_blank_and_shape():
    # blank = 3: the 0s are labels, the 3s separate the repeated 1s
    assert ctc_greedy_collapse([3, 1, 3, 1, 1, 0, 0, 3], blank=3).tolist() == [1, 1, 0]
    # a [1, time] best path is read as [time]
    assert ctc_greedy_collapse(np.array([[4, 4, 0, 5]])).tolist() == [4, 5]


@pytest.mark.parametrize(
    "refs,hyps,cer,wer",
    [
        (["abcd"], ["abcd"], 0.0, 0.0),
        (["abcd"], ["abxd"], 1 / 4, 1.0),  # 1 substitution in 4 chars; the one word is wrong
        (["one two"], ["one too"], 1 / 7, 1 / 2),  # the space counts as a character
        (["a b c d"], ["a b d"], 2 / 7, 1 / 4),  # 1 word deleted: 2 chars ("c", " ") of 7
        (["abc"], [""], 1.0, 1.0),  # empty hypothesis: all deletions
        (["ab"], ["abcd"], 2 / 2, 1.0),  # 2 insertions over 2 reference chars
        (["ab", "cdef"], ["abz", "cdef"], 1 / 6, 1 / 2),  # corpus level: edits / reference length
        (["one two three", "four"], ["one three", "four five"], 9 / 17, 2 / 4),
    ],
)
def test_error_rates_hand_counted(refs, hyps, cer, wer):
    out = error_rates(refs, hyps)
    assert set(out) == {"cer", "wer"}
    assert out["cer"] == pytest.approx(cer) and out["wer"] == pytest.approx(wer)


def test_error_rates_bad_input():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_rates(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one reference"):
        error_rates([], [])
    with pytest.raises(ValueError, match="reference transcript is empty"):
        error_rates(["abc", "  "], ["abc", "x"])
