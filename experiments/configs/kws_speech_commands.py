"""Keyword spotting on Google Speech Commands (v0.01 or v0.02), 12- or 35-class protocol.

  python -m experiments.train --config=experiments/configs/kws_speech_commands.py:lstm \\
      --config.data_dir=/path/to/speech_commands_v0.02 --workdir=runs/sc_lstm
  # or through TFDS (pip install 'rnnbench[tfds]'):  --config.dataset=tfds:speech_commands

Standard protocol: official validation/testing lists; unknown and silence sampled as in the
TensorFlow recipe. Hello Edge (Zhang et al. 2017) reports 92.9% for a small LSTM on v0.01.
"""

from experiments.configs import common


def get_config(variant: str = "lstm"):
    c = common.base_config()
    c.dataset = "speech_commands"
    c.data.protocol = 12
    c.model.frontend.channels = 64
    c.buckets = (16000,)
    c.num_steps = 20000
    c.eval_every = 2000
    c.checkpoint_every = 2000
    c.spec_augment.enabled = True
    return common.apply_variant(c, variant)
