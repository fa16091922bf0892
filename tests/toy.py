"""Tiny in-memory datasets and configs shared by the training tests (and their subprocesses)."""

import json
import os
import shutil

import numpy as np

from experiments.configs import kws
from rnnbench import data as data_lib

SR = 16000


def tone_dataset(task="classify", n=24, seconds=0.3, seed=0):
    """A tiny in-memory dataset: each class (or CTC symbol) is a pure tone at its own pitch."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR

    def tone(freq, length):
        """The tone in the middle half of the clip, faint noise around it (so that per-utterance
        normalisation keeps the contrast between tone and background)."""
        x = 0.01 * rng.normal(size=length)
        seg = slice(length // 4, 3 * length // 4)
        x[seg] += 0.5 * np.sin(2 * np.pi * freq * t[: seg.stop - seg.start])
        return (x * 32767).clip(-32768, 32767).astype(np.int16)

    splits = {}
    for name in ("train", "validation", "test"):
        if task == "classify":
            labels = (np.arange(n) % 3).astype(np.int32)
            audio = [tone(300 + 500 * int(l), int(len(t) * rng.uniform(0.7, 1.0))) for l in labels]
            splits[name] = data_lib.Split(audio, labels, None, ["s"] * n)
        else:
            texts = [["ab", "ba", "a", "b"][i % 4] for i in range(n)]
            audio = [
                np.concatenate([tone(400 if ch == "a" else 1500, SR // 10) for ch in s])
                for s in texts
            ]
            splits[name] = data_lib.Split(audio, None, texts, ["s"] * n)
    classes = ["low", "mid", "high"] if task == "classify" else list(data_lib.CTC_ALPHABET)
    return data_lib.Dataset(f"tones_{task}", task, classes, splits)


def small_config(variant="lstm", **model):
    c = kws.get_config(variant)
    c.model.hidden = 16
    c.model.frontend.channels = 8
    c.batch_size = 8
    c.num_steps = 4
    c.eval_every = 2
    c.checkpoint_every = 2
    c.buckets = ()
    c.features.n_mels = 16
    c.optimizer.warmup_steps = 0
    c.optimizer.schedule = "constant"
    c.spec_augment.enabled = False
    for k, v in model.items():
        c.model[k] = v
    return c


def with_decode(workdir, tmp_path, decode):
    """A copy of the run whose config.json decodes with `decode` (what --config.decode... sets)."""
    copy = str(tmp_path / "run_copy")
    shutil.copytree(workdir, copy)
    with open(os.path.join(copy, "config.json")) as f:
        config = json.load(f)
    config["decode"] = decode
    with open(os.path.join(copy, "config.json"), "w") as f:
        json.dump(config, f)
    return copy
