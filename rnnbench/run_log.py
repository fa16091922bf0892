"""What a run writes to its workdir: config.json, metrics.jsonl, final.json, and W&B.

metrics.jsonl holds one JSON object per logged event: {"step", "split", <metric>: value, ...}.
W&B (`wandb_mode` online | offline | disabled) mirrors the same events; it never blocks or fails
a run: if it cannot start (no network, not logged in) the run goes on with a warning.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import ml_collections

from rnnbench import atomic

WANDB_MODES = ("online", "offline", "disabled")


def check_config_matches(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Raises ValueError if `workdir` holds config.json of a different config (or a broken
    one); writes nothing, so it can run before the workdir is claimed."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"--workdir {workdir} is a file, not a directory")
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is unreadable ({e}); it is not a run this version wrote, "
                         f"use a new --workdir or remove it") from None
    current = json.loads(config.to_json_best_effort())
    if saved != current:
        diff = sorted(diff_keys(saved, current))
        raise ValueError(f"{workdir} holds a run of a different config (differs in "
                         f"{', '.join(diff)}); use a new --workdir or the same config")


def check_or_write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Writes config.json, or checks that an existing one (a run to resume) matches `config`."""
    check_config_matches(workdir, config)
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        atomic.write_json(path, json.loads(config.to_json_best_effort()), sort_keys=True)


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


class RunLog:
    """Appends events to metrics.jsonl (and W&B); `finish` writes final.json atomically."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict, *,
                 wandb_mode: str = "offline", resume_step: int = 0):
        if wandb_mode not in WANDB_MODES:
            raise ValueError(f"wandb mode must be one of {WANDB_MODES}, got {wandb_mode!r}")
        self.workdir = workdir
        self.path = os.path.join(workdir, "metrics.jsonl")
        kept = _truncate_after(self.path, resume_step)
        # training seconds before this process started (a resumed run continues the clock)
        self.time_offset = float(kept[-1].get("time_s", 0.0)) if kept else 0.0
        self.wandb = _start_wandb(workdir, config, wandb_mode) if wandb_mode != "disabled" else None

    def write(self, step: int, split: str, **metrics: Any) -> None:
        event = {"step": int(step), "split": split, **metrics}
        with open(self.path, "a") as f:
            f.write(json.dumps(event, default=float) + "\n")
        if self.wandb is not None:
            try:
                self.wandb.log({f"{split}/{k}": v for k, v in metrics.items()}, step=int(step))
            except Exception as e:  # noqa: BLE001 - logging must never kill a run
                warnings.warn(f"W&B log failed ({e}); continuing with local files only")
                self.wandb = None

    def finish(self, final: dict) -> None:
        atomic.write_json(os.path.join(self.workdir, "final.json"), final, sort_keys=True)
        if self.wandb is not None:
            try:
                self.wandb.summary.update(
                    {k: v for k, v in final.items() if isinstance(v, (int, float, str))})
                self.wandb.finish()
            except Exception as e:  # noqa: BLE001
                warnings.warn(f"W&B finish failed ({e}); final.json is written")


def _truncate_after(path: str, step: int) -> list[dict]:
    """Drops events past `step` (logged after the checkpoint a resumed run restarts from) and
    returns the events kept."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [l for l in f if l.strip()]
    keep, events = [], []
    for line in lines:
        try:
            event = json.loads(line)
            if event["step"] <= step:
                keep.append(line if line.endswith("\n") else line + "\n")
                events.append(event)
        except (ValueError, KeyError):
            continue  # a line cut short by a kill
    atomic.write_text(path, "".join(keep))
    return events


def _start_wandb(workdir: str, config, mode: str):
    try:
        import wandb
    except ImportError:
        warnings.warn("wandb is not installed; logging to local files only")
        return None
    wcfg = config.get("wandb") or {}
    run_id_path = os.path.join(workdir, "wandb_run_id")
    run_id = open(run_id_path).read().strip() if os.path.exists(run_id_path) else None
    try:
        run = wandb.init(
            project=wcfg.get("project", "rnnbench"), group=wcfg.get("group") or None,
            name=wcfg.get("name") or os.path.basename(os.path.abspath(workdir)),
            dir=workdir, mode=mode, id=run_id, resume="allow" if run_id else None,
            config=json.loads(config.to_json_best_effort()), reinit="finish_previous",
            settings=wandb.Settings(init_timeout=60, silent=True, console="off"))
    except Exception as e:  # noqa: BLE001 - no network, not logged in, ...
        warnings.warn(f"W&B could not start in {mode} mode ({type(e).__name__}: {e}); "
                      "logging to local files only")
        return None
    atomic.write_text(run_id_path, run.id)
    return run
