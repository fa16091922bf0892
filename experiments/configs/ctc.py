"""Connected-digit recognition with CTC on `synth_digits` (eSpeak NG, unseen test voices).

  python -m experiments.train --config=experiments/configs/ctc.py:bilstm --workdir=runs/ctc_bilstm
  # real speech: --config.dataset=fsdd_digits --config.data_dir=/path/to/fsdd

Characters (a-z, space, apostrophe) plus the CTC blank; greedy decoding; CER and WER with
jiwer. Frames are kept at 10 ms (no stride) so that every transcript fits the CTC constraint.
Measured (1,000 steps, `python -m experiments.reproduce ctc_cells`): results/ctc_cells.md.
"""

from experiments.configs import common


def get_config(variant: str = "bilstm"):
    c = common.base_config()
    c.dataset = "synth_digits"
    c.model.kind = "ctc"
    c.model.frontend.channels = 0
    c.data.options = {"train_size": 3000, "validation_size": 500, "test_size": 500}
    c.num_steps = 2000
    c.eval_every = 500
    c.checkpoint_every = 500
    c.batch_size = 32
    c.optimizer.learning_rate = 2e-3
    c = common.apply_variant(c, variant)
    return c


def sweeps():
    """Named grids for `python -m experiments.sweep` (see rnnbench/sweep.py)."""
    from rnnbench.grid import product, sweep

    return {
        # 3 cells x uni/bi x 3 seeds = 18 runs
        "cells": product(
            sweep("model.cell", ["rnn", "lstm", "gru"]),
            sweep("model.bidirectional", [False, True]),
            sweep("seed", [0, 1, 2]),
        ),
    }
