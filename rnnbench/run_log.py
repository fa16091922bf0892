"""What a run writes to its workdir: config.json, metrics.jsonl, final.json, and W&B.

  check_workdir(workdir)          before any work: usable as a run dir, not in use (writes nothing)
  check_config_matches(workdir, config)   a run already there is of the same config
  claim(workdir, config)          context: lock the workdir, write config.json; a start that fails
                                  before its first checkpoint leaves no config.json behind
  RunLog(workdir, config, ...)    metrics.jsonl events (+ W&B); `finish` writes final.json

metrics.jsonl holds one JSON object per logged event: {"step", "split", <metric>: value, ...}.
W&B (`wandb_mode` online | offline | disabled) mirrors the same events; it never fails a run
and never holds it up for more than ~10 s at start or at finish: online mode first checks that
the W&B server answers (3 s) and logs offline (`wandb sync` uploads later) when it does not;
`wandb.init` and `run.finish` get 10 s timeouts. The seconds spent waiting on W&B at start are
recorded (`wandb_wait_s`), outside the training time.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import ml_collections

from rnnbench import atomic
from rnnbench.errors import WorkdirError

WANDB_MODES = ("online", "offline", "disabled")
WANDB_TIMEOUT_S = 10.0  # longest wait on wandb.init / run.finish
WANDB_PROBE_S = 3.0  # longest wait for the W&B server to answer before going offline
LOCK_FILE = "run.lock"


# ----------------------------------------------------------------------------- the workdir


def check_workdir(workdir: str) -> None:
    """Raises WorkdirError if `workdir` cannot hold a run: it (or a parent) is a file, it cannot
    be created or written, its checkpoints/ is read-only, or another process is training in it.
    Writes nothing, so it runs before the workdir is claimed."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir {workdir} is a file, not a directory")
    parent = os.path.abspath(workdir)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise WorkdirError(
            f"--workdir {workdir} cannot be created: {parent} is a file, not a directory"
        )
    for d in (parent, os.path.join(workdir, "checkpoints")):
        if os.path.isdir(d) and not os.access(d, os.W_OK | os.X_OK):
            raise WorkdirError(
                f"--workdir {workdir}: {d} is not writable (read-only file "
                "system or no permission); choose a writable --workdir"
            )
    if os.path.exists(os.path.join(workdir, LOCK_FILE)):
        with _locked(workdir):  # raises WorkdirError if another process holds it
            pass


def check_config_matches(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Raises WorkdirError if `workdir` holds config.json of a different config (or a broken
    one); writes nothing, so it can run before the workdir is claimed."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir {workdir} is a file, not a directory")
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise WorkdirError(
            f"{path} is unreadable ({e}); it is not a config.json this version "
            "wrote: use a new --workdir, or remove it to start the run afresh"
        ) from None
    current = json.loads(config.to_json_best_effort())
    if saved != current:
        diff = sorted(diff_keys(saved, current))
        raise WorkdirError(
            f"{workdir} holds a run of a different config (differs in "
            f"{', '.join(diff)}); use a new --workdir or the same config"
        )


def checkpoint_steps(workdir: str) -> list[int]:
    """Steps of the checkpoints in workdir/checkpoints (directories named by their step)."""
    d = os.path.join(workdir, "checkpoints")
    names = os.listdir(d) if os.path.isdir(d) else []
    return sorted(int(n) for n in names if n.isdigit())


@contextlib.contextmanager
def claim(workdir: str, config: ml_collections.ConfigDict):
    """Claims `workdir` for this process while the block runs: takes its lock (a second process
    on the same workdir is refused) and writes config.json, or checks the one there. If the
    block fails before the run's first checkpoint exists, the config.json (and W&B run id)
    written here are removed again, so a corrected command is not refused for a config that
    never trained."""
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"--workdir {workdir} cannot be created: {e.strerror}") from None
    wrote = []
    with _locked(workdir):
        try:
            check_config_matches(workdir, config)
            path = os.path.join(workdir, "config.json")
            if not os.path.exists(path):
                atomic.write_json(path, json.loads(config.to_json_best_effort()), sort_keys=True)
                wrote += [path, os.path.join(workdir, "wandb_run_id")]
            yield
        except BaseException:
            if wrote and not checkpoint_steps(workdir):
                for p in wrote:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(p)
            raise


def check_or_write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Writes config.json, or checks that an existing one (a run to resume) matches `config`."""
    check_config_matches(workdir, config)
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        atomic.write_json(path, json.loads(config.to_json_best_effort()), sort_keys=True)


_HELD: dict[str, list] = {}  # realpath of a lock file -> [fd, depth]: re-entrant in-process


@contextlib.contextmanager
def _locked(workdir: str):
    """An exclusive flock on workdir/run.lock (released by the kernel if the process dies)."""
    path = os.path.realpath(os.path.join(workdir, LOCK_FILE))
    if path in _HELD:
        _HELD[path][1] += 1
        try:
            yield
        finally:
            _HELD[path][1] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            with contextlib.suppress(OSError), open(path) as f:
                owner = f.read().strip()
            raise WorkdirError(
                f"--workdir {workdir} is in use by another run (pid "
                f"{owner or '?'}); wait for it to finish or choose another "
                "--workdir"
            ) from None
        fd = None  # a file system without flock (some network mounts): run unlocked
    if fd is None:
        yield
        return
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[path] = [fd, 1]
    try:
        yield
    finally:
        _HELD[path][1] -= 1
        if not _HELD[path][1]:
            del _HELD[path]
            os.close(fd)  # releases the flock


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


# ----------------------------------------------------------------------------- the log


class RunLog:
    """Appends events to metrics.jsonl (and W&B); `finish` writes final.json atomically.

    `wandb_mode` is the W&B mode actually used ("offline" after an unreachable server,
    "disabled" after a failed start) and `wandb_wait_s` the seconds W&B took to start."""

    def __init__(
        self,
        workdir: str,
        config: ml_collections.ConfigDict,
        *,
        wandb_mode: str = "offline",
        resume_step: int = 0,
    ):
        if wandb_mode not in WANDB_MODES:
            raise ValueError(f"wandb mode must be one of {WANDB_MODES}, got {wandb_mode!r}")
        self.workdir = workdir
        self.path = os.path.join(workdir, "metrics.jsonl")
        kept = _truncate_after(self.path, resume_step)
        # training seconds before this process started (a resumed run continues the clock)
        self.time_offset = float(kept[-1].get("time_s", 0.0)) if kept else 0.0
        t0 = time.time()
        self.wandb, self.wandb_mode = None, "disabled"
        if wandb_mode != "disabled":
            self.wandb, self.wandb_mode = _start_wandb(workdir, config, wandb_mode)
        self.wandb_wait_s = time.time() - t0

    def write(self, step: int, split: str, **metrics: Any) -> None:
        event = {"step": int(step), "split": split, **metrics}
        with open(self.path, "a") as f:
            f.write(json.dumps(event, default=float) + "\n")
        if self.wandb is not None:
            try:
                self.wandb.log({f"{split}/{k}": v for k, v in metrics.items()}, step=int(step))
            except Exception as e:  # noqa: BLE001 - logging must never kill a run
                _warn(f"W&B log failed ({e}); continuing with local files only")
                self.wandb = None

    def finish(self, final: dict) -> None:
        atomic.write_json(os.path.join(self.workdir, "final.json"), final, sort_keys=True)
        if self.wandb is not None:
            try:
                self.wandb.summary.update(
                    {k: v for k, v in final.items() if isinstance(v, (int, float, str))}
                )
                self.wandb.finish()
            except Exception as e:  # noqa: BLE001
                _warn(f"W&B finish failed ({e}); final.json is written")
            self.wandb = None

    def close(self) -> None:
        """Ends the W&B run of a run that failed (marked failed in W&B); local files stay."""
        if self.wandb is not None:
            with contextlib.suppress(Exception):
                self.wandb.finish(exit_code=1)
            self.wandb = None


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


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
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
    atomic.write_text(path, "".join(keep))
    return events


def server_unreachable(url: str, timeout: float = WANDB_PROBE_S) -> str | None:
    """None if an HTTP server answers at `url` within `timeout` seconds (any status), else why
    not. Runs in a daemon thread so that a slow DNS lookup cannot hold the caller up either."""
    result: list[str | None] = []

    def probe():
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout)
            result.append(None)
        except urllib.error.HTTPError:
            result.append(None)  # it answered
        except Exception as e:  # noqa: BLE001 - URLError, timeout, ...
            result.append(f"{type(e).__name__}: {getattr(e, 'reason', e)}")

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return result[0] if result else f"no answer within {timeout:.0f} s"


def _wandb_settings(wandb):
    """Bounded waits on W&B (unless the user set them in the environment)."""
    known = getattr(wandb.Settings, "model_fields", {})
    wanted = {"silent": True, "console": "off"}
    if "WANDB_INIT_TIMEOUT" not in os.environ:
        wanted["init_timeout"] = WANDB_TIMEOUT_S
    if "WANDB_FINISH_TIMEOUT" not in os.environ:
        wanted["finish_timeout"] = WANDB_TIMEOUT_S
    return wandb.Settings(**{k: v for k, v in wanted.items() if k in known})


def _start_wandb(workdir: str, config, mode: str):
    """-> (run or None, the mode used)."""
    try:
        import wandb
    except ImportError:
        _warn("wandb is not installed; logging to local files only")
        return None, "disabled"
    if mode == "online":
        url = os.environ.get("WANDB_BASE_URL") or wandb.Settings().base_url
        why = server_unreachable(url)
        if why:
            _warn(
                f"W&B server {url} is not reachable ({why}); logging W&B offline to "
                f"{workdir}/wandb (upload later with `wandb sync`)"
            )
            mode = "offline"
            # wandb's own usage telemetry would otherwise wait ~10 s on that server at exit
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    wcfg = config.get("wandb") or {}
    run_id_path = os.path.join(workdir, "wandb_run_id")
    run_id = None
    if os.path.exists(run_id_path):
        with open(run_id_path) as f:
            run_id = f.read().strip() or None
    try:
        run = wandb.init(
            project=wcfg.get("project", "rnnbench"),
            group=wcfg.get("group") or None,
            name=wcfg.get("name") or os.path.basename(os.path.abspath(workdir)),
            dir=workdir,
            mode=mode,
            id=run_id,
            resume="allow" if run_id else None,
            config=json.loads(config.to_json_best_effort()),
            reinit="create_new",
            settings=_wandb_settings(wandb),
        )
    except Exception as e:  # noqa: BLE001 - no network, not logged in, ...
        _warn(
            f"W&B could not start in {mode} mode ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:300]}); logging to local files only"
        )
        return None, "disabled"
    atomic.write_text(run_id_path, run.id)
    return run, mode
