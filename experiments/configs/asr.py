"""Speech recognition: model families x recurrent cells, on phrases, FSDD digit strings or digits.

  python -m experiments.train --config=experiments/configs/asr.py:joint_bilstm_phrases \\
      --workdir=runs/asr_joint_bilstm
  python -m experiments.train --config=experiments/configs/asr.py:ctc_bigru_fsdd \\
      --config.decode.beam=10 --workdir=runs/asr_ctc_bigru_fsdd   # needs $RNNBENCH_FSDD_DIR

Variant `<family>_<encoder>[_<dataset>]`:
  family   ctc         CTC (`model.kind="ctc"`); decode.beam 0 = greedy best path, > 0 = prefix
                       beam search, with a character n-gram LM when decode.lm_order > 0
           las         attention encoder-decoder (listen, attend and spell), attention loss only
                       (`model.ctc_weight=0`), label smoothing 0.1, location-aware attention
           joint       the same trained jointly with CTC (`model.ctc_weight=0.3`, as ESPnet)
           transducer  RNN transducer (prediction network from the encoder's cell)
  encoder  as in common.py: lstm, bigru, mingru, bilstm2, ... (also the LAS decoder's and the
           transducer prediction network's cell)
  dataset  phrases (default; synth_phrases, eSpeak NG commands, unseen test voices), fsdd
           (fsdd_digits: real FSDD recordings; data from $RNNBENCH_FSDD_DIR or
           --config.data_dir), digits (synth_digits; `ctc_bilstm_digits` trains and evaluates
           what experiments/configs/ctc.py:bilstm does). phrases and fsdd put a strided conv
           (64 channels, stride 2: 20 ms frames) before the recurrent encoder; digits keeps
           ctc.py's 10 ms frames

Decoding (`config.decode`, read by rnnbench/objectives/): `beam` is each family's search width
(CTC: 0 = greedy; las/joint/transducer: 1 = greedy, the default); the lm_* fields, the
insertion bonus and token pruning apply to CTC only. Validation during training always decodes
greedily; the final evaluation uses `decode`.

Sweeps (`python -m experiments.sweep --config=experiments/configs/asr.py:<variant> --sweep=...`):
  families  4 families x lstm/gru/mingru x seeds 0-2 (36 runs) on the variant's dataset, every
            family decoded greedily; use a bidirectional variant (ctc_bilstm_phrases,
            ctc_bilstm_fsdd), as `python -m experiments.reproduce asr_families_phrases` does;
            families_<cell> (lstm, gru, mingru): one cell's 12 runs (families_lstm_seed0: the
            LSTM's 4 at seed 0)
  decoders  seeds 0-2 of the variant (ctc_bilstm_digits / ctc_bilstm_fsdd), the runs
            `python -m experiments.decoders` compares greedy, beam and beam+LM decoding on
            (decoders_seed0: seed 0 alone, what a loaded 2-core CPU affords)
Tables: `python -m experiments.reproduce NAME` for asr_families_phrases[_seed0, _lstm_seed0],
asr_families_fsdd[_lstm, _lstm_seed0, _gru, _mingru], ctc_decoders[_seed0], ctc_decoders_fsdd writes
results/NAME.md (measured numbers, and the command in the file's header).
"""

from ml_collections import config_dict

from experiments.configs import ctc, ctc_fsdd

FAMILIES = {  # family -> the fields that define it (overrides of the config)
    "ctc": {"model.kind": "ctc", "model.ctc_weight": 1.0, "decode.beam": 0},
    "las": {"model.kind": "las", "model.ctc_weight": 0.0, "decode.beam": 1},
    "joint": {"model.kind": "las", "model.ctc_weight": 0.3, "decode.beam": 1},
    "transducer": {"model.kind": "transducer", "model.ctc_weight": 0.0, "decode.beam": 1},
}
DATASETS = ("phrases", "fsdd", "digits")
DECODER_FIELDS = {  # config.model fields of the attention decoder and the transducer: the
    # models' own defaults ("" / 0: the encoder's cell / width), named so that a flag reaches them
    "decoder_cell": "",
    "decoder_hidden": 0,
    "embed": 64,
    "attention": "location",  # location | content
    "attention_dim": 128,
    "loc_filters": 32,
    "loc_width": 31,  # frames of the previous alignment the location term sees
    "decoder_dropout": 0.0,
    "pred_cell": "",
    "pred_hidden": 0,
    "pred_embed": 0,
    "pred_layers": 1,
    "pred_dropout": 0.0,
    "joint_dim": 0,
}
CELLS = ("lstm", "gru", "mingru")  # two gated cells and one parallel-scan cell
SEEDS = (0, 1, 2)


def parse_variant(variant: str) -> tuple[str, str, str]:
    """'joint_bigru_fsdd' -> ('joint', 'bigru', 'fsdd'); the dataset defaults to phrases."""
    parts = (variant or "ctc_bilstm").split("_")
    family = parts[0]
    dataset = parts[-1] if len(parts) > 2 and parts[-1] in DATASETS else "phrases"
    encoder = "_".join(parts[1:-1] if dataset == parts[-1] else parts[1:])
    if family not in FAMILIES or not encoder:
        raise ValueError(
            f"asr.py variant {variant!r}: expected <family>_<encoder>[_<dataset>] "
            f"with family in {sorted(FAMILIES)}, an encoder such as bilstm or "
            f"mingru, and dataset in {DATASETS}, e.g. joint_bilstm_phrases"
        )
    return family, encoder, dataset


def _dataset_config(dataset: str, encoder: str):
    if dataset == "digits":
        return ctc.get_config(encoder)  # synth_digits, 10 ms frames
    if dataset == "fsdd":
        # fsdd_digits, 20 ms frames after a conv, as on phrases: on 10 ms frames (what
        # ctc_fsdd.py trains) the joint model's attention collapses onto the first frame,
        # the backward LSTM's summary of the whole utterance, and never aligns (seen in
        # `experiments.evaluate --alignments`); on 20 ms frames it aligns monotonically
        c = ctc_fsdd.get_config(encoder)
    else:  # synth_phrases: 1-6 s clips
        c = ctc.get_config(encoder)
        c.dataset = "synth_phrases"
        c.data.options = {"train_size": 3000, "validation_size": 400, "test_size": 400}
    c.model.frontend.channels = 64
    c.model.frontend.stride = 2
    return c


def get_config(variant: str = "ctc_bilstm_phrases"):
    family, encoder, dataset = parse_variant(variant)
    c = _dataset_config(dataset, encoder)

    # Model family (the encoder comes from the variant via common.apply_variant).
    c.model.ctc_weight = 0.0  # las: weight of the CTC loss next to the attention loss
    c.model.label_smoothing = 0.1  # las: on the attention decoder's targets
    for field, value in DECODER_FIELDS.items():  # las: seq2seq.py; transducer: transducer.py
        c.model[field] = value
    c.decode = config_dict.ConfigDict(
        {
            "beam": 0,  # CTC: 0 = greedy; las/transducer: >= 1 (1 = greedy)
            "lm_order": 0,  # CTC: character n-gram LM from the training transcripts
            "lm_weight": 0.0,
            "insertion_bonus": 0.0,
            "token_prune": config_dict.placeholder(int),  # CTC: top-k labels per frame (None: all)
        }
    )
    for key, value in FAMILIES[family].items():
        section, field = key.split(".")
        c[section][field] = value
    return c


def sweeps():
    """Named grids for `python -m experiments.sweep` (see rnnbench/grid.py)."""
    from rnnbench.grid import chain, product, sweep

    return {
        # 4 families x 3 cells x 3 seeds = 36 runs; family varies slowest
        "families": product(
            chain(*FAMILIES.values()), sweep("model.cell", CELLS), sweep("seed", SEEDS)
        ),
        # the same 12 configurations at seed 0 alone (the attention models train at ~2 s/step
        # on this 2-core CPU, two at a time: ~3 h on phrases), or the 4 families of the LSTM
        "families_seed0": product(
            chain(*FAMILIES.values()), sweep("model.cell", CELLS), sweep("seed", [0])
        ),
        **{  # the 4 families of one cell, 3 seeds: families_lstm, families_gru, families_mingru
            f"families_{cell}": product(
                chain(*FAMILIES.values()), sweep("model.cell", [cell]), sweep("seed", SEEDS)
            )
            for cell in CELLS
        },
        "families_lstm_seed0": product(
            chain(*FAMILIES.values()), sweep("model.cell", ["lstm"]), sweep("seed", [0])
        ),
        # the trained CTC runs of a decoder comparison: 3 seeds of the variant, or seed 0 alone
        "decoders": sweep("seed", SEEDS),
        "decoders_seed0": sweep("seed", [0]),
    }
