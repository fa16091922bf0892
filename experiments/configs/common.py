"""Shared pieces of the experiment configs: the base ConfigDict and the `:variant` table.

A variant names the encoder: `<cell>` (rnn, lstm, gru, gru_cho, ...), optionally prefixed by
`bi` and suffixed by the layer count and an attention kind, e.g. `lstm`, `bigru2`,
`lstm_attn` (attention pooling), `lstm_selfattn` (self-attention over states), `lstm_mean`.
"""

import re

import ml_collections
from ml_collections import config_dict

ATTENTION_SUFFIXES = {
    "last": ("last", 0),
    "mean": ("mean", 0),
    "attn": ("attention", 0),
    "selfattn": ("last", 4),
}


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.dataset = "synth_commands"
    c.data_dir = config_dict.placeholder(str)
    c.data = ml_collections.ConfigDict(
        {"protocol": 12, "seed": 0, "cache_dir": config_dict.placeholder(str), "options": {}}
    )
    c.buckets = ()  # audio bucket lengths in samples; () = from the data's length quantiles

    # Input: log-mel features computed on device inside the jitted step.
    c.features = ml_collections.ConfigDict(
        {"kind": "logmel", "n_mels": 40, "win_ms": 25.0, "hop_ms": 10.0, "normalize": "utterance"}
    )
    c.spec_augment = ml_collections.ConfigDict(
        {
            "enabled": False,
            "num_time_masks": 2,
            "time_mask_width": 10,
            "num_freq_masks": 2,
            "freq_mask_width": 8,
        }
    )

    # Model.
    c.model = ml_collections.ConfigDict()
    c.model.kind = "classifier"
    c.model.cell = "lstm"
    c.model.hidden = 128
    c.model.layers = 1
    c.model.bidirectional = False
    c.model.pooling = "last"  # last | mean | attention
    c.model.attention_heads = 0  # > 0: multi-head self-attention over the RNN states
    c.model.frontend = ml_collections.ConfigDict({"channels": 0, "kernel": 5, "stride": 2})
    c.model.dropout = 0.0  # between layers
    c.model.input_dropout = 0.0  # variational, on each layer's inputs
    c.model.recurrent_dropout = 0.0  # variational, on h before the recurrent matmul
    c.model.zoneout = 0.0
    c.model.residual = False
    c.model.layer_norm = False
    c.model.unroll = 0  # 0 = auto: 1 on CPU, 8 on accelerators (rnnbench.layers.resolve_unroll)
    c.model.dtype = ""  # legacy: "bfloat16" = precision "bf16" for the cells
    c.model.aux_ae_weight = 0.0  # autoencoder auxiliary loss weight
    c.model.cell_kwargs = ml_collections.ConfigDict()

    # How float32 matmuls run (rnnbench/precision.py): "float32" exact, the same numbers on CPU
    # and GPU up to rounding; "tf32" the backend's fast path (TF32 on NVIDIA GPUs); "bf16" the
    # cells' matmuls in bfloat16 with float32 params and carries.
    c.precision = "float32"

    # Optimizer.
    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adam"  # adam | adamw | sgd
    c.optimizer.learning_rate = 3e-3
    c.optimizer.schedule = "cosine"  # constant | cosine | step
    c.optimizer.warmup_steps = 50
    c.optimizer.clip_norm = 1.0
    c.optimizer.weight_decay = 1e-4  # adamw only
    c.optimizer.l1 = 0.0
    c.optimizer.l2 = 0.0
    c.optimizer.stability_beta = 0.0  # beta * mean ||h_t - h_{t-1}||^2

    # Loop.
    c.batch_size = 64
    c.num_steps = 1500
    c.eval_every = 500
    c.checkpoint_every = 500
    c.keep_checkpoints = 2
    c.log_every = 50
    c.wandb = ml_collections.ConfigDict({"project": "rnnbench", "group": "", "name": ""})
    return c


def apply_variant(c: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """Sets cell / bidirectional / layers / pooling / attention from a variant name."""
    m = re.fullmatch(r"(bi)?([a-z_]+?)(\d*)(?:_(last|mean|attn|selfattn))?", variant or "lstm")
    if not m:
        raise ValueError(
            f"cannot parse config variant {variant!r}; expected e.g. lstm, bigru2, "
            "lstm_attn, gru_selfattn"
        )
    bi, cell, layers, att = m.groups()
    c.model.cell = cell
    c.model.bidirectional = bool(bi)
    c.model.layers = int(layers) if layers else 1
    if att:
        c.model.pooling, c.model.attention_heads = ATTENTION_SUFFIXES[att]
    return c
