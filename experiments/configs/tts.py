"""Speech synthesis: a small Tacotron 2 (rnnbench/tts.py) on ONE eSpeak voice of synth_phrases.

  python -m experiments.train --config=experiments/configs/tts.py:lstm --workdir=runs/tts_lstm
  python -m experiments.synthesize --workdir=runs/tts_lstm "set a timer for five minutes" \\
      --out=a.wav
  # the decoder-cell table (results/tts_decoder_cells.md): the sweep below at 2,000 steps, then
  # experiments.tts_bench, judged by the BiGRU CTC recogniser of slu_pipeline_gru_seed0
  # (trained on synth_phrases' training voices; VOICE is not one of them)
  python -m experiments.reproduce tts_decoder_cells --dry_run   # the exact commands

`:variant` names the DECODER cell (lstm, gru, gru_cho, rnn, mingru, minlstm, lru: any registered
cell, stepped autoregressively); the encoder is 3 convolutions + a BiLSTM of 128 per direction.
`:variant,runlocal` shrinks everything for a quick local check (tiny model, 40 steps).

What it trains: characters -> 80-channel log-mels (50 ms Hann window, 12.5 ms hop, n_fft
1024, natural log of mel power), 3 frames per decoder step, a stop token, a post-net; MSE on the
mels before and after the post-net, BCE on the stop token (positives x5) and a guided-attention
loss (rnnbench/objectives/tts.py). Audio comes back through Griffin-Lim with the same STFT
(rnnbench/vocoder.py); no neural vocoder.

Data: synth_phrases said by the single voice `VOICE` (a test voice of the seed-0 voice
partition, so a recogniser trained on synth_phrases' training voices has never heard it), clean
(no added noise), split="phrasings" (test sentences never said in training); the one-voice
rendering is synth_phrases' `voice` option (rnnbench/data/phrases.py).

Measured: no number is typed here; run experiments/tts_bench.py on a trained run (its JSON and
Markdown say what was measured, on which machine, at which commit).
"""

import ml_collections

from experiments.configs import common

VOICE = "en-us+m2"  # accent + eSpeak variant; "m2" is a test voice of voice_partition(seed 0)
DECODER_CELLS = ("lstm", "gru", "mingru")
REDUCTIONS = (3, 5, 8)  # the "reductions" sweep; 3 is the config's
SCHEDULED_SAMPLING = (0.25, 0.5, 0.75)  # the "scheduled_sampling" sweep; the config's is 0


def get_config(arg: str = "lstm"):
    parts = [p for p in (arg or "lstm").split(",") if p]
    decoder_cell, runlocal = parts[0], "runlocal" in parts[1:]
    unknown = [p for p in parts[1:] if p != "runlocal"]
    if unknown:
        raise ValueError(
            f"unknown tts config options {unknown}; use e.g. 'lstm' or 'mingru,runlocal'"
        )
    c = common.base_config()

    # Input: one clean voice; test sentences unseen in training.
    c.dataset = "synth_phrases"
    c.data.options = {
        "voice": VOICE,
        "split": "phrasings",
        "train_size": 2000,
        "validation_size": 100,
        "test_size": 100,
    }
    # Targets: the objective computes these log-mels from the audio itself (no normalisation,
    # no SpecAugment); the same settings invert them (vocoder.log_mel_to_audio).
    c.features = ml_collections.ConfigDict(
        {
            "kind": "logmel",
            "n_mels": 80,
            "win_ms": 50.0,
            "hop_ms": 12.5,
            "n_fft": 1024,
            "fmin": 0.0,
            "normalize": "none",
        }
    )
    c.spec_augment.enabled = False

    # Model (rnnbench/tts.py; defaults there are Tacotron 2's shapes, smaller).
    c.model.kind = "tts"
    c.model.cell = "lstm"  # encoder cell
    c.model.hidden = 128  # per direction
    c.model.layers = 1
    c.model.bidirectional = True
    c.model.frontend.channels = 0
    c.model.embed = 128
    c.model.conv_channels = 128
    c.model.conv_layers = 3
    c.model.conv_kernel = 5
    c.model.conv_dropout = 0.5
    c.model.decoder_cell = decoder_cell
    c.model.decoder_hidden = 256
    c.model.decoder_layers = 1  # Tacotron 2 has 2 (attention RNN + decoder RNN); 1 on CPU
    c.model.decoder_cell_kwargs = ml_collections.ConfigDict()
    c.model.prenet = (128, 128)
    c.model.prenet_dropout = 0.5
    c.model.attention_dim = 128
    c.model.loc_filters = 32
    c.model.loc_width = 31
    c.model.reduction = 3
    # Probability that a training decoder step is fed its own previous frame instead of the
    # true one (scheduled sampling, rnnbench/tts.py; 0 = teacher forcing, as Tacotron 2).
    c.model.scheduled_sampling = 0.0
    c.model.postnet_channels = 128
    c.model.postnet_layers = 5
    c.model.postnet_kernel = 5
    c.model.postnet_dropout = 0.5
    # Loss (rnnbench/objectives/tts.py).
    c.model.mel_loss = "mse"
    c.model.stop_weight = 1.0
    c.model.stop_pos_weight = 5.0
    c.model.guided_attention_weight = 1.0
    c.model.guided_attention_sigma = 0.2

    # Inference (experiments/synthesize.py, experiments/tts_bench.py).
    c.synthesis = ml_collections.ConfigDict(
        {
            "max_seconds": 8.0,
            "stop_threshold": 0.5,
            "prenet_dropout": True,
            "griffin_lim_iters": 60,
            "power": 1.2,
        }
    )

    # Optimizer.
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 200
    c.optimizer.clip_norm = 1.0

    # Loop.
    c.batch_size = 32
    c.num_steps = 3000
    c.eval_every = 1000
    c.checkpoint_every = 500
    c.log_every = 50

    if runlocal:
        c.data.options = {
            "voice": VOICE,
            "split": "phrasings",
            "train_size": 64,
            "validation_size": 16,
            "test_size": 16,
        }
        c.model.hidden = 32
        c.model.embed = c.model.conv_channels = 32
        c.model.decoder_hidden = 64
        c.model.prenet = (32, 32)
        c.model.attention_dim = 32
        c.model.postnet_channels = 32
        c.batch_size = 8
        c.num_steps = 40
        c.eval_every = c.checkpoint_every = 20
        c.optimizer.warmup_steps = 5
        c.log_every = 10
    return c


def sweeps():
    """Named grids for `python -m experiments.sweep` (see rnnbench/sweep.py)."""
    from rnnbench.grid import sweep

    return {
        "decoder_cells": sweep("model.decoder_cell", list(DECODER_CELLS)),
        # frames per decoder step (use with the :gru variant): fewer autoregressive steps per
        # utterance, so less room for a free-running decoder to drift from its text
        "reductions": sweep("model.reduction", list(REDUCTIONS)),
        # the GRU decoder fed its own frames in training (use with the :gru variant): does
        # closing the gap between teacher forcing and free running lower the synthesised CER?
        "scheduled_sampling": sweep("model.scheduled_sampling", list(SCHEDULED_SAMPLING)),
        # the GRU decoder alone (for longer training, scored at several checkpoints)
        "gru": sweep("model.decoder_cell", ["gru"]),
    }
