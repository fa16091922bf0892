"""Subprocess entry for the multi-device, vmapped-seeds loop test.

python tests/toy_seeds.py WORKDIR_PREFIX N_STEPS SEEDS  -> train_and_evaluate_many over SEEDS
(comma-separated) in one vmapped program; prints the device count and the finals as JSON.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from toy import small_config, tone_dataset  # noqa: E402

from rnnbench import train  # noqa: E402

if __name__ == "__main__":
    prefix, steps, seeds = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")]
    configs = []
    for s in seeds:
        c = small_config("gru")
        c.num_steps, c.eval_every, c.checkpoint_every, c.log_every = steps, steps, steps, 1
        c.seed = s
        configs.append(c)
    finals = train.train_and_evaluate_many(
        configs,
        [f"{prefix}{s}" for s in seeds],
        wandb_mode="disabled",
        progress=False,
        dataset=tone_dataset(n=32),
    )
    print(json.dumps({"devices": jax.device_count(), "finals": finals}, default=str))
