"""Keyword spotting on `synth_commands` (12 classes, test on unseen eSpeak voices): the default.

  python -m experiments.train --config=experiments/configs/kws.py:lstm --workdir=runs/kws_lstm

Variants (`:variant`): rnn, lstm, gru, gru_cho, bilstm2, lstm_attn (attention pooling),
lstm_selfattn (self-attention over states), lstm_mean, ... (see configs/common.py).
Front-end: a stride-2 conv halves the frame rate (101 -> 51 steps) before the RNN.
Measured: see results/kws_default.md.
"""

from experiments.configs import common


def get_config(variant: str = "lstm"):
    c = common.base_config()
    c.dataset = "synth_commands"
    c.data.protocol = 12
    c.model.frontend.channels = 64
    c.buckets = (16000,)  # every clip is 1 s
    c.data.options = {"train_size": 6000, "validation_size": 1200, "test_size": 1200}
    return common.apply_variant(c, variant)
