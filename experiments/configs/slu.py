"""Spoken language understanding on `synth_phrases`: an utterance's intent and slots from audio.

  # direct: audio -> meaning (model.kind "intent": encoder, pooling, one head per slot)
  python -m experiments.train --config=experiments/configs/slu.py:bigru2_attn --workdir=runs/slu_gru
  # pipeline: a recogniser on the same corpus, then a text parser on its transcripts
  python -m experiments.train --config=experiments/configs/slu.py:bigru2_attn \\
      --config.model.kind=ctc --workdir=runs/slu_gru_ctc
  python -m experiments.slu_pipeline --workdir=runs/slu_gru_ctc --split=test
  # unseen phrasings instead of (only) unseen voices: --config.data.options.split=phrasings

Input: synth_phrases (rnnbench/data/phrases.py), 3,000 train / 400 validation / 400 test
spoken commands of 1-6 s from a 10-intent grammar, voices disjoint across splits; with
`split=phrasings` no test transcript is ever said in training. 40 log-mel features every 10 ms,
SpecAugment in training. Model: a stride-2 conv front-end, a 2-layer bidirectional RNN of 128
per direction, attention pooling (`--config.model.pooling=head_attention`: one attention query
per head), one linear head for the intent and one per slot name (18);
`--config.model.ctc_weight=0.3` adds an auxiliary CTC head on the encoder, trained on the
transcripts (loss = 0.7 * meaning + 0.3 * CTC).
Metric: exact-meaning accuracy (intent and every slot right), also intent and per-slot accuracy.
Optimizer: Adam 2e-3, 100 warmup steps, cosine decay, clip 1, batch 32, 3,000 steps.
Variants (`:variant`) name the encoder as in configs/common.py: bigru2_attn, bilstm2_attn,
lstm, mingru, ... The sweeps below compare every recurrent cell, directly and as a pipeline.
Measured: results/slu_direct_gru_seed0.md and results/slu_pipeline_gru_seed0.md (BiGRU, seed 0),
results/slu_best_direct_gru_seeds12.md (BEST_DIRECT at seeds 1 and 2) and
results/slu_best_direct_gru_20k.md (BEST_DIRECT on 20,000 utterances, 4,000 steps, 3 seeds) and
results/slu_best_direct_cells_seed0.md (the same with LSTM and minGRU encoders),
results/slu_best_direct_gru_phrasings_20k.md (BEST_DIRECT on unseen phrasings at that budget, 3
seeds) and results/slu_pipeline_gru_20k_seed0.md (the pipeline at that budget), each made by
`python -m experiments.reproduce <name>`; no number here is typed.
"""

from experiments.configs import common

CELLS = ("rnn", "lstm", "gru", "mingru", "minlstm", "lru")  # mingru/minlstm/lru: parallel scan
SPLITS = ("voices", "phrasings")
# the best direct model of results/slu_direct_gru_seed0.md: one attention query per head, the
# auxiliary CTC loss, 10,000 training utterances; unseen voices (on 20,000 utterances and 4,000
# steps it does better at every seed: results/slu_best_direct_gru_20k.md)
BEST_DIRECT = {
    "model.pooling": "head_attention",
    "model.ctc_weight": 0.3,
    "data.options.train_size": 10000,
    "model.cell": "gru",
    "data.options.split": "voices",
}


def _without(overrides: dict, *keys: str) -> dict:
    """`overrides` minus `keys`, in its order (run names follow the order of the keys)."""
    return {k: v for k, v in overrides.items() if k not in keys}


def get_config(variant: str = "bigru2_attn"):
    c = common.base_config()
    c.dataset = "synth_phrases"
    c.data.options = {
        "train_size": 3000,
        "validation_size": 400,
        "test_size": 400,
        "split": "voices",
    }
    c.model.kind = "intent"
    c.model.hidden = 128
    c.model.frontend.channels = 64
    c.model.pooling = "attention"
    c.model.ctc_weight = 0.0  # > 0: + an auxiliary CTC loss on the transcript (intent kind)
    c.spec_augment.enabled = True
    c.batch_size = 32
    c.num_steps = 3000
    c.eval_every = 500
    c.checkpoint_every = 500
    c.optimizer.learning_rate = 2e-3
    c.optimizer.warmup_steps = 100
    return common.apply_variant(c, variant)


def sweeps():
    """Named grids: `python -m experiments.sweep --config=experiments/configs/slu.py:bigru2_attn
    --sweep=direct --workdir=runs/slu_direct` (rnnbench/sweep.py); `recognisers` trains the CTC
    recognisers of the pipeline, each then scored by `python -m experiments.slu_pipeline
    --workdir=runs/slu_recognisers/<run>`. Cells x split x 3 seeds = 36 runs each; the
    `*_gru_seed0` sweeps are their BiGRU seed-0 slice (2 runs each; the direct one adds
    `head_attention` pooling on both splits, without and with the auxiliary CTC loss, and the
    latter on 10,000 training utterances)."""
    from rnnbench.grid import chain, product, sweep

    grid = product(
        sweep("model.cell", CELLS), sweep("data.options.split", SPLITS), sweep("seed", [0, 1, 2])
    )
    gru_seed0 = product(
        sweep("model.cell", ["gru"]), sweep("data.options.split", SPLITS), sweep("seed", [0])
    )
    return {
        "direct": grid,
        "recognisers": product({"model.kind": "ctc"}, grid),
        # the first slice of both: BiGRU (this file's default encoder), both splits, seed 0
        # (+ the direct BiGRU with one attention query per head instead of one for all, and
        # that with the auxiliary CTC loss)
        "direct_gru_seed0": chain(
            gru_seed0,
            product(
                {"model.pooling": "head_attention", "model.cell": "gru"},
                sweep("data.options.split", SPLITS),
                {"seed": 0},
            ),
            product(
                {"model.pooling": "head_attention", "model.ctc_weight": 0.3, "model.cell": "gru"},
                sweep("data.options.split", SPLITS),
                {"seed": 0},
            ),
            # ... and that on 10,000 training utterances instead of 3,000 (the same validation
            # and test clips: each split is drawn from its own seed), unseen voices only
            dict(BEST_DIRECT, seed=0),
        ),
        # the best direct BiGRU of direct_gru_seed0 at seeds 1 and 2 (its seed 0 is there)
        "best_direct_gru_seeds12": product(BEST_DIRECT, sweep("seed", [1, 2])),
        # BEST_DIRECT's model at three seeds, its corpus size left to --override (the entry
        # slu_best_direct_gru_20k of experiments/reproduce.py: 20,000 utterances, 4,000 steps)
        "best_direct_gru_3seeds": product(
            _without(BEST_DIRECT, "data.options.train_size"),
            sweep("seed", [0, 1, 2]),
        ),
        # ... and its model with the other encoders: minGRU (parallel scan) and LSTM, seed 0
        # (entry slu_best_direct_cells_seed0: 20,000 utterances, 4,000 steps, as above)
        "best_direct_cells_seed0": product(
            _without(BEST_DIRECT, "data.options.train_size", "model.cell"),
            sweep("model.cell", ["mingru", "lstm"]),
            {"seed": 0},
        ),
        # ... and its model on the unseen-phrasings split (entry
        # slu_best_direct_gru_phrasings_20k: 20,000 utterances, 4,000 steps): how much of the
        # unseen-voices figure is memorised phrasing
        "best_direct_gru_phrasings_3seeds": product(
            _without(BEST_DIRECT, "data.options.train_size") | {"data.options.split": "phrasings"},
            sweep("seed", [0, 1, 2]),
        ),
        "recognisers_gru_seed0": product({"model.kind": "ctc"}, gru_seed0),
        # the pipeline's BiGRU recogniser on unseen voices alone (entry
        # slu_pipeline_gru_20k_seed0: on the best direct recipe's 20,000 utterances, 4,000 steps)
        "recogniser_gru_voices_seed0": product(
            {"model.kind": "ctc", "model.cell": "gru", "data.options.split": "voices"}, {"seed": 0}
        ),
    }
