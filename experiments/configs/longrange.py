"""Long-range dependency experiments: how far back can each architecture remember?

  python -m experiments.train --config=experiments/configs/longrange.py:adding_gru --workdir=runs/x
  python -m experiments.longrange --task=adding --lengths=25,50,100,200 --cells=rnn,lstm,gru
  python -m experiments.sweep --config=experiments/configs/longrange.py:adding --sweep=adding \\
      --workdir=runs/longrange_adding

Variants (`:variant`): `<task>` or `<task>_<encoder>`, task one of
  adding     adding problem (rnnbench.tasks.Adding), T = `task.length`, regress, MSE (baseline 1/6)
  copy       copy memory (tasks.CopyMemory), 10 symbols of 8, T = `task.length` blanks, per-step
             tagger, scored on the 10 recall steps only (baseline log 8)
  selective  selective copying (tasks.SelectiveCopy), 4 tokens of 8 scattered over T =
             `task.length` noise steps, scored on the recall steps (baseline log 8)
  recall     delayed keyword recall (rnnbench.data.recall.synth_recall): a spoken command word,
             then `data.options.delay_s` seconds of other words / noise; classify the keyword
             from the last state (10 classes, chance 0.1)
and the encoder suffix parsed by configs/common.py (rnn, lstm, gru, lstm_attn, lstm_selfattn,
mingru, ...); default lstm. The dependency length swept by `sweeps()` and by
experiments/longrange.py is `task.length` (synthetic tasks) or `data.options.delay_s` (recall).
"""

from experiments.configs import common

TASK_NAMES = ("adding", "copy", "selective", "recall")

# Per task: the swept length field, the default lengths, and what counts as "solved" (used by the
# plots of experiments/longrange.py): (metric, direction, threshold).
LENGTH_FIELD = {
    "adding": "task.length",
    "copy": "task.length",
    "selective": "task.length",
    "recall": "data.options.delay_s",
}
DEFAULT_LENGTHS = {
    "adding": (25, 50, 100, 200),
    "copy": (0, 10, 20, 40),
    "selective": (10, 20, 40, 80),
    "recall": (0.5, 1.0, 2.0),
}
SOLVED = {
    "adding": ("test_loss", "below", 1.0 / 60.0),  # MSE < 10% of the 1/6 baseline
    "copy": ("test_accuracy", "above", 0.9),  # >= 90% of the symbols recalled
    "selective": ("test_accuracy", "above", 0.9),
    "recall": ("test_accuracy", "above", 0.5),
}  # chance is 0.1


def split_variant(variant: str) -> tuple[str, str]:
    """'adding_gru' -> ('adding', 'gru'); 'recall' -> ('recall', 'lstm')."""
    task, _, encoder = (variant or "adding").partition("_")
    if task not in TASK_NAMES:
        raise ValueError(
            f"unknown longrange task {task!r} in variant {variant!r}; expected one "
            f"of {TASK_NAMES} optionally followed by _<encoder>, e.g. adding_gru"
        )
    return task, encoder or "lstm"


def get_config(variant: str = "adding"):
    task, encoder = split_variant(variant)
    c = common.base_config()
    c.model.hidden = 64
    c.batch_size = 64
    c.optimizer.learning_rate = 3e-3
    c.optimizer.schedule = "constant"  # measured (adding T=50, GRU 64, 300 steps, 2 seeds):
    c.optimizer.warmup_steps = 0  # constant 0.037 MSE, +50 warmup 0.072, cosine 0.177
    c.optimizer.clip_norm = 1.0
    c.eval_every = 100  # validation curve every 100 steps (the learning-curve plot)
    c.log_every = 50
    c.keep_checkpoints = 1
    c.task_eval_size = 512
    if task == "recall":
        c.dataset = "synth_recall"
        c.data.protocol = 12
        c.data.options = {
            "delay_s": 1.0,
            "train_size": 100_000,
            "validation_size": 600,
            "test_size": 600,
        }
        c.buckets = ()  # one bucket: every clip is 1 s + delay_s (set by the loader)
        c.model.hidden = 128
        c.model.frontend.channels = 64  # stride-2 conv: 100 frames/s -> 50 RNN steps/s
        c.model.kind = "classifier"
        c.num_steps = 1500
        c.eval_every = 250
        c.checkpoint_every = 500
    else:
        c.dataset = f"task:{task}"
        c.task = {"length": DEFAULT_LENGTHS[task][1]}
        c.model.frontend.channels = 0
        c.model.kind = "classifier" if task == "adding" else "tagger"
        c.num_steps = 1500
        c.checkpoint_every = 500
    c = common.apply_variant(c, encoder)
    return c


def sweeps():
    """Named grids for `python -m experiments.sweep --config=experiments/configs/longrange.py:<task>
    --sweep=<name>`; every entry is a list of override dicts (lengths x cells x seeds). Use the
    matching variant (`:adding` for the adding sweep, `:recall` for recall, ...)."""
    from rnnbench.sweep import chain, product, sweep

    seeds = sweep("seed", [0, 1, 2])
    cells = sweep("model.cell", ["rnn", "lstm", "gru"])
    out = {}
    for task in ("adding", "copy", "selective"):
        out[task] = product(sweep("task.length", list(DEFAULT_LENGTHS[task])), cells, seeds)
    # recall: the three cells with last-state readout, plus the LSTM with attention pooling and
    # with 4-head self-attention over its states (does attention rescue long delays?)
    encoders = chain(
        sweep("model.cell", ["rnn", "lstm", "gru"]),
        {"model.cell": "lstm", "model.pooling": "attention"},
        {"model.cell": "lstm", "model.attention_heads": 4},
    )
    out["recall"] = product(
        sweep("data.options.delay_s", list(DEFAULT_LENGTHS["recall"])), encoders, seeds
    )
    # the parallel-scan cells on the adding problem (sequential scan; see bench_scan for cost)
    out["adding_linear"] = product(
        sweep("task.length", list(DEFAULT_LENGTHS["adding"])),
        sweep("model.cell", ["mingru", "minlstm", "lru"]),
        seeds,
    )
    return out
