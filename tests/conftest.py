import os
import sys

# tests/ helpers (toy.py) importable from tests and from the subprocesses they start
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ctc_run(tmp_path_factory):
    """A tiny trained CTC run on the tone dataset: (workdir, dataset, final metrics)."""
    from toy import small_config, tone_dataset

    from rnnbench import train

    workdir = str(tmp_path_factory.mktemp("ctc_run"))
    c = small_config("lstm")
    c.model.kind = "ctc"
    c.model.frontend.channels = 0
    c.num_steps, c.eval_every, c.checkpoint_every = 30, 30, 30
    c.optimizer.learning_rate = 1e-2
    ds = tone_dataset("ctc")
    final = train.train_and_evaluate(c, workdir, wandb_mode="disabled", progress=False, dataset=ds)
    return workdir, ds, final
