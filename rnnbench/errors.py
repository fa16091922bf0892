"""Expected errors, and the one error boundary every entry point runs inside.

An *expected* error is one whose message is the whole story: a bad config value, a missing or
broken file, a dataset that does not fit the buckets, a full disk, a checkpoint that cannot be
written. The boundary prints it as ONE line, `error: <message>`, and exits with status 2, without
a traceback unless `--verbose` is given or `RNNBENCH_VERBOSE=1`. Anything else is a bug: its
traceback is kept (Python's exit status 1). Ctrl-C prints one line and exits with 130.

Expected errors are:
  - `UserError` (a ValueError) and its kinds below;
  - a ValueError or FloatingPointError raised by rnnbench's or experiments' own code (the house
    rule: bad input is a ValueError that names the file, flag or value) - not one raised inside
    numpy, JAX or another library, which stays a bug until shown otherwise;
  - an OSError that names a file or is about the file system (missing, permission denied,
    read-only, disk full): the environment, not the code.

Entry points:
  absl:      `app.run(main)`            -> `errors.run(main)`           (also adds --verbose)
  argparse:  `main()`                   -> `errors.call(main)`          (RNNBENCH_VERBOSE=1)
  anywhere:  `with errors.boundary(): ...`
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

EXIT_ERROR = 2  # an expected error: bad input, environment, a fault the message names
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
VERBOSE_ENV = "RNNBENCH_VERBOSE"
_OWN_CODE = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), d) + os.sep
    for d in ("rnnbench", "experiments")
)
_FILE_SYSTEM_ERRNOS = {
    errno.ENOENT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENOTEMPTY,
}


class UserError(ValueError):
    """An error whose message names the culprit (file, flag, value) and what was expected."""


class ConfigError(UserError):
    """A config value that cannot run (wrong type, out of range, unknown name)."""


class DataError(UserError):
    """A dataset, file or example that cannot be used as it is."""


class WorkdirError(UserError):
    """A run directory that cannot be used: a file, not writable, another run's, in use."""


class CheckpointError(UserError):
    """A checkpoint that cannot be written, or no checkpoint that restores."""


def is_verbose() -> bool:
    """RNNBENCH_VERBOSE=1 in the environment, or `--verbose` of an absl entry point (`run`)."""
    if os.environ.get(VERBOSE_ENV, "").lower() in ("1", "true", "yes"):
        return True
    absl_flags = sys.modules.get("absl.flags")
    if absl_flags is not None and "verbose" in absl_flags.FLAGS:
        if absl_flags.FLAGS.is_parsed():
            return bool(absl_flags.FLAGS.verbose)
        return any(a in ("--verbose", "--verbose=true") for a in sys.argv[1:])  # parse failed
    return False


def _raised_by_own_code(e: BaseException) -> bool:
    tb = e.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last is not None and os.path.abspath(last).startswith(_OWN_CODE)


def is_expected(e: BaseException) -> bool:
    """Whether `e` is an expected error (see the module docstring), printed without traceback."""
    if isinstance(e, UserError):
        return True
    if isinstance(e, OSError):
        return e.filename is not None or e.errno in _FILE_SYSTEM_ERRNOS
    if isinstance(e, (ValueError, FloatingPointError)):
        return _raised_by_own_code(e)
    return False


def one_line(e: BaseException) -> str:
    """The error's message on one line (an OSError as 'reason: file')."""
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        msg = f"{e.strerror}: {e.filename}"
        if e.filename2 is not None:
            msg += f" -> {e.filename2}"
    else:
        msg = str(e) or type(e).__name__
    return " ".join(msg.split())


@contextlib.contextmanager
def boundary(verbose: bool | None = None):
    """Turns an expected error into `error: <one line>` on stderr and exit status 2, Ctrl-C into
    exit status 130; re-raises everything else (a bug keeps its traceback)."""
    try:
        yield
    except KeyboardInterrupt:
        print(
            "error: interrupted; checkpoints written so far are kept, run the same command "
            "to resume",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Exception as e:  # sorted into expected / unexpected right here
        if not is_expected(e):
            raise
        if verbose if verbose is not None else is_verbose():
            traceback.print_exc()
        print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_ERROR) from None


def call(main: Callable[..., Any], *args, **kwargs) -> Any:
    """`main(*args, **kwargs)` inside the boundary (for argparse entry points)."""
    with boundary():
        return main(*args, **kwargs)


def run(main: Callable[[list[str]], Any], **app_run_kwargs) -> None:
    """`absl.app.run(main, ...)` inside the boundary, flag parsing included; defines --verbose."""
    from absl import app, flags

    if "verbose" not in flags.FLAGS:
        flags.DEFINE_bool(
            "verbose",
            False,
            f"Print the traceback of expected errors too (same as {VERBOSE_ENV}=1).",
        )
    with boundary():
        app.run(main, **app_run_kwargs)
