"""Subprocess entry for the end-to-end training tests.

python tests/toy_run.py losses N_STEPS              -> prints the per-step losses as JSON
python tests/toy_run.py train WORKDIR N_STEPS EVERY -> train_and_evaluate on the tone dataset
python tests/toy_run.py run WORKDIR N_STEPS EVERY [--wandb=MODE] [key=value ...]
    -> the same inside rnnbench.errors' boundary (one-line errors, exit status 2), with config
       overrides (e.g. optimizer.learning_rate=1e-2) and W&B (default disabled)
"""

import ast
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from toy import small_config, tone_dataset  # noqa: E402

from rnnbench import errors, input_pipeline, objectives, train  # noqa: E402
from rnnbench.data import batching  # noqa: E402


def override(c, item: str) -> None:
    """key.path=value on a ConfigDict; the value is a Python literal or else a string."""
    key, _, text = item.partition("=")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    *parents, leaf = key.split(".")
    node = c
    for name in parents:
        node = node[name]
    node[leaf] = value


def config(steps, every):
    c = small_config("lstm", dropout=0.1, layers=2)
    c.num_steps, c.eval_every, c.checkpoint_every, c.log_every = steps, every, every, 1
    c.spec_augment.enabled = True
    return c


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "losses":
        steps = int(sys.argv[2])
        c = config(steps, steps)
        ds = tone_dataset(n=32)
        placement = train.Placement.create()
        objective = objectives.make(c, ds)
        graphdef, state, tx, _ = train.init_state(c, ds, objective)
        step_fn, _ = train.make_steps(c, graphdef, tx, objective)
        step_fn = jax.jit(step_fn, out_shardings=placement.replicated)
        state = placement.put_state(state)
        batches = batching.train_batches(
            ds.splits["train"],
            batch_size=c.batch_size,
            seed=0,
            buckets=input_pipeline.auto_buckets(ds),
        )
        losses = []
        for _ in range(steps):
            state, m = step_fn(state, placement.put_batch(next(batches)))
            losses.append(float(m["loss"]))
        print(json.dumps({"devices": jax.device_count(), "losses": losses}))
    elif mode == "train":
        workdir, steps, every = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        final = train.train_and_evaluate(
            config(steps, every),
            workdir,
            wandb_mode="disabled",
            progress=False,
            dataset=tone_dataset(n=32),
        )
        print(json.dumps(final))
    elif mode == "run":
        workdir, steps, every = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        wandb_mode = "disabled"
        with errors.boundary():
            c = config(steps, every)
            for item in sys.argv[5:]:
                if item.startswith("--wandb="):
                    wandb_mode = item[len("--wandb=") :]
                else:
                    override(c, item)
            final = train.train_and_evaluate(
                c, workdir, wandb_mode=wandb_mode, progress=True, dataset=tone_dataset(n=32)
            )
        print(json.dumps(final))
