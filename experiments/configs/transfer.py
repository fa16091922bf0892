"""Synthetic-to-real transfer: keyword spotters trained on `synth_commands` only, scored on real
speech by `python -m experiments.transfer` (results/transfer.md).

  RNNBENCH_FSDD_DIR=/path/to/fsdd python -m experiments.transfer --workdir=runs/transfer
  python -m experiments.train --config=experiments/configs/transfer.py:gru \\
      --config.data.options.augment=speed,rir --workdir=runs/one_row   # one row by hand

Each row of `ROWS` is one corpus recipe: `augment` lists options of rnnbench/data/augment.py
(entering the corpus spec and cache key), `mel_warp` turns on the on-device VTLP warp of
rnnbench/features.py, `sc_noise` adds Speech Commands' `_background_noise_` recordings to the
noise (a row that runs only when the table is given --speech_commands_dir), `fmax` limits the
log-mel filterbank (training and test) to the band an 8 kHz recording like FSDD's can hold.
The `flite` rows need CMU Flite's program (apt install flite; rnnbench/data/flite.py). The comparison uses short runs: a 1-layer GRU of 128 (`:gru`; the best
cell at short budgets in results/kws_cells.md), 800 steps unless a row says, seed 0, the default corpus sizes
(12,000 / 1,200 / 1,200 clips). The full-size version of a row is the main job's command with
the row's options, e.g. `python -m experiments.train --config=experiments/configs/kws.py:lstm
--config.data.options.augment=... --workdir=runs/x` after adding `augment` to kws.py's options.
"""

import dataclasses

from experiments.configs import common, kws, kws_fsdd

ALL = "bandwidth,channel,intonation,noise,rir,speed,vtlp"


@dataclasses.dataclass(frozen=True)
class Row:
    """One corpus recipe of the transfer table."""

    name: str
    augment: str = ""  # synth_commands augment options, comma-separated
    mel_warp: float = 0.0  # spec_augment.mel_warp (on device, training only)
    protocols: tuple[int, ...] = (35,)  # 35: FSDD digits (and SC words); 12: the main job's
    sc_noise: bool = False  # + Speech Commands' _background_noise_ (only with that data)
    fmax: float | None = None  # features.fmax (Hz): the band the model hears, training and test
    num_steps: int | None = None  # training steps (None: NUM_STEPS)


ROWS = (
    Row("default", protocols=(35, 12)),
    Row("intonation", "intonation"),
    Row("speed", "speed"),
    Row("vtlp", "vtlp"),
    Row("rir", "rir"),
    Row("noise", "noise"),
    Row("channel", "channel"),
    Row("bandwidth", "bandwidth", protocols=(35, 12)),
    Row("mel_warp", mel_warp=0.1),
    Row("all", ALL),
    Row("all+mel_warp", ALL, mel_warp=0.1, protocols=(35, 12)),
    Row("all+mel_warp+sc_noise", ALL, mel_warp=0.1, protocols=(35, 12), sc_noise=True),
    Row("band4k", fmax=4000.0),
    Row("band4k+all", ALL, fmax=4000.0),
    Row("trim", "trim"),
    Row("bandwidth+trim", "bandwidth,trim", protocols=(35, 12)),
    Row("bandwidth+trim+mel_warp", "bandwidth,trim", mel_warp=0.1),
    Row("bandwidth+speed+trim", "bandwidth,speed,trim"),
    Row("bandwidth+speed+noise+trim", "bandwidth,noise,speed,trim"),
    Row("bandwidth+speed+intonation+trim", "bandwidth,intonation,speed,trim"),
    Row("all+trim", ALL + ",trim"),
    # Flite's voices (built from recordings of real people) speak half the training words
    Row("flite", "flite"),
    Row("bandwidth+speed+trim+flite", "bandwidth,flite,speed,trim", protocols=(35, 12)),
    Row("bandwidth+trim+flite", "bandwidth,flite,trim"),
    Row("bandwidth+speed+vtlp+trim+flite", "bandwidth,flite,speed,trim,vtlp"),
    Row("all+trim+flite", ALL + ",trim,flite"),
    # ... Flite speaks every training word (eSpeak only the babble noise, if any)
    Row("flite:1", "flite:1"),
    Row("bandwidth+speed+trim+flite:1", "bandwidth,flite:1,speed,trim"),
    # the best recipe trained longer: does the harder corpus need more than 800 steps?
    Row("bandwidth+speed+trim+flite, 2400 steps", "bandwidth,flite,speed,trim", num_steps=2400),
    Row("bandwidth+speed+trim, 2400 steps", "bandwidth,speed,trim", num_steps=2400),  # its control
    Row("bandwidth+speed+trim+flite, 6000 steps", "bandwidth,flite,speed,trim", num_steps=6000),
)
NUM_STEPS = 800
SIZES = {"train_size": 12000, "validation_size": 1200, "test_size": 1200}  # kws.py's


def get_config(
    variant: str = "gru",
    protocol: int = 35,
    row: Row = Row("default"),
    noise_dir: str | None = None,
):
    """The main job's config (kws.py) for one row: `protocol`, the row's corpus and warp,
    NUM_STEPS steps. `noise_dir`: the Speech Commands _background_noise_ folder (sc_noise rows)."""
    if row.sc_noise and not noise_dir:
        raise ValueError(
            f"row {row.name!r} needs Speech Commands' _background_noise_ folder "
            "(--speech_commands_dir)"
        )
    c = kws.get_config(variant)
    c.data.protocol = protocol
    c.data.options = {**SIZES, "augment": row.augment}
    if row.sc_noise:
        c.data.options.noise_dir = noise_dir
    c.spec_augment.mel_warp = row.mel_warp
    if row.fmax:
        c.features.fmax = row.fmax
    c.num_steps = row.num_steps or NUM_STEPS
    c.eval_every = c.checkpoint_every = c.num_steps // 2
    return c


def reference_config(variant: str = "gru", fsdd_dir: str = ""):
    """The real-speech reference: the same model and steps trained on FSDD (official split)."""
    c = kws_fsdd.get_config(variant)
    c.data_dir = fsdd_dir
    c.num_steps = NUM_STEPS
    c.eval_every = 400
    c.checkpoint_every = 400
    return common.apply_variant(c, variant)
