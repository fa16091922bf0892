"""Spoken-digit classification on FSDD (real recordings, 10 classes, official split).

  python -m experiments.train --config=experiments/configs/kws_fsdd.py:lstm \\
      --config.data_dir=/path/to/free-spoken-digit-dataset --workdir=runs/fsdd_lstm

FSDD is not shipped: point --config.data_dir (or $RNNBENCH_FSDD_DIR) at a copy with
`recordings/{digit}_{speaker}_{index}.wav`. Official split: takes 0-4 test, 5-49 train
(validation carved from train, see rnnbench/data/fsdd.py). Measured: results/kws_fsdd.md.
"""

import os

from experiments.configs import common


def get_config(variant: str = "lstm"):
    c = common.base_config()
    c.dataset = "fsdd"
    c.data_dir = os.environ.get("RNNBENCH_FSDD_DIR", "")
    c.data.options = {"split": "official"}
    c.model.frontend.channels = 64
    c.num_steps = 1000
    c.eval_every = 250
    c.checkpoint_every = 250
    return common.apply_variant(c, variant)


def sweeps():
    """Named grids for `python -m experiments.sweep`: the `cells` grid of kws.py, on FSDD."""
    from experiments.configs import kws
    from rnnbench.grid import product, sweep

    return {
        "cells": kws.sweeps()["cells"],
        "lstm_gru": product(sweep("model.cell", ["gru", "lstm"]), sweep("seed", [0, 1, 2])),
    }
