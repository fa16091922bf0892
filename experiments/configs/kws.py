"""Keyword spotting on `synth_commands` (12 classes, test on unseen eSpeak voices): the default.

  python -m experiments.train --config=experiments/configs/kws.py:lstm --workdir=runs/kws_lstm

Input: 12,000 train / 1,200 validation / 1,200 test one-second clips (voices disjoint across
splits), 40 log-mel features every 10 ms computed on device, SpecAugment in training.
Model: a stride-2 conv front-end (101 -> 51 steps), one LSTM layer of 128, the last state, a
linear head. Optimizer: Adam 3e-3, 50 warmup steps, cosine decay, clip 1, batch 64, 2,000 steps.
Variants (`:variant`): rnn, lstm, gru, gru_cho, bilstm2, lstm_attn (attention pooling),
lstm_selfattn (self-attention over states), lstm_mean, ... (see configs/common.py).
Measured (accuracy on unseen voices, wall time with corpus build): results/kws_default.md.
"""

from experiments.configs import common


def get_config(variant: str = "lstm"):
    c = common.base_config()
    c.dataset = "synth_commands"
    c.data.protocol = 12
    c.model.frontend.channels = 64
    c.buckets = (16000,)  # every clip is 1 s
    c.data.options = {"train_size": 12000, "validation_size": 1200, "test_size": 1200}
    c.spec_augment.enabled = True
    c.num_steps = 2000
    return common.apply_variant(c, variant)


def sweeps():
    """Named grids: `python -m experiments.sweep --config=experiments/configs/kws.py --sweep=cells
    --workdir=runs/kws_cells` (see rnnbench/sweep.py). Each entry is a list of override dicts.
    The committed tables ran them at 600 steps: `python -m experiments.reproduce kws_cells
    --dry_run` prints their exact commands (experiments/reproduce.py)."""
    from rnnbench.grid import chain, product, sweep

    seeds = sweep("seed", [0, 1, 2])
    return {
        # 3 cells x 3 widths x 2 depths x 3 seeds = 54 runs
        "cells": product(
            sweep("model.cell", ["rnn", "lstm", "gru"]),
            sweep("model.hidden", [64, 128, 256]),
            sweep("model.layers", [1, 2]),
            seeds,
        ),
        # pooling of the RNN states: last / mean / attention, or self-attention over the states
        "attention": product(
            sweep("model.cell", ["lstm", "gru"]),
            chain(
                sweep("model.pooling", ["last", "mean", "attention"]),
                {"model.pooling": "last", "model.attention_heads": 4},
            ),
            seeds,
        ),
        # on the variant's cell; `none` twice: at 1 layer and at the 2 layers dropout needs
        "regularisers": product(
            chain(
                {},
                {"model.layers": 2},
                {"model.layers": 2, "model.dropout": 0.3},
                {"model.recurrent_dropout": 0.25, "model.input_dropout": 0.25},  # variational
                {"model.zoneout": 0.1},
                {"optimizer.l2": 1e-4},
                sweep("optimizer.stability_beta", [0.01, 0.1, 1.0]),  # norm stabiliser
                {"model.aux_ae_weight": 0.1},  # autoencoder auxiliary loss
            ),
            seeds,
        ),
        "depth": product(
            sweep("model.layers", [1, 2, 3, 4]), sweep("model.residual", [False, True]), seeds
        ),
    }
