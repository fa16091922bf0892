"""Connected-digit CTC recognition on real speech: `fsdd_digits` (FSDD recordings of one speaker
concatenated with short gaps; official takes split).

  python -m experiments.train --config=experiments/configs/ctc_fsdd.py:bilstm \\
      --config.data_dir=/path/to/fsdd --workdir=runs/ctc_fsdd_bilstm
"""

import os

from experiments.configs import ctc


def get_config(variant: str = "bilstm"):
    c = ctc.get_config(variant)
    c.dataset = "fsdd_digits"
    c.data_dir = os.environ.get("RNNBENCH_FSDD_DIR", "")
    c.data.options = {}
    return c


def sweeps():
    """The CTC sweeps of ctc.py, on fsdd_digits."""
    return ctc.sweeps()
