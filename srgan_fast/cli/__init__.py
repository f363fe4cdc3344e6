"""The `srgan-fast` command. argparse lives here only; every command is a plain function.

One module per command, its parser and its handler side by side: `add_parser(sub)` adds the
subparser (and `set_defaults(func=run)`), `run(args)` does the work and returns the exit code.
COMMANDS lists them in the order `srgan-fast --help` shows them; adding a command is one module
and one entry there. main() loads the plugins, dispatches, and turns errors into exit codes.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from . import bench, convert, demo, export, gst_env, models, train, upscale, video
from . import eval as eval_  # the `eval` command's module (`eval` stays the builtin here)

# the commands, in the order `srgan-fast --help` lists them
COMMANDS = (models, eval_, upscale, convert, export, demo, video, bench, gst_env, train)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="srgan-fast",
        description="SRGAN super-resolution: reference model, trainer and fast engine.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


# commands with their own parsers, dispatched before argparse (its REMAINDER drops --options);
# their subparsers exist for `srgan-fast --help` only, and their run() takes the raw arguments
_PASS_THROUGH = {"bench": bench, "train": train}


def main(argv: list[str] | None = None) -> int:
    program = argv is None  # run as the `srgan-fast` program, not called from Python
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else "srgan-fast"
    import warnings

    def one_line(message, category, filename, lineno, line=None):  # not the source line under it
        from ..errors import _one_line  # a message of several lines (a library's) joined into one

        return f"srgan-fast {command}: warning: {_one_line(str(message))}\n"

    shown, warnings.formatwarning = warnings.formatwarning, one_line
    try:
        return _main(argv, program, command)
    finally:
        warnings.formatwarning = shown


def _main(argv: list[str], program: bool, command: str) -> int:
    try:
        from ..plugins import load_plugins

        load_plugins()  # third-party backends and families, before any choices are listed
        if argv and argv[0] in _PASS_THROUGH:
            return _PASS_THROUGH[argv[0]].run(argv[1:])
        args = build_parser().parse_args(argv)
        from ..errors import SignalGuard

        with SignalGuard():  # SIGTERM ends like Ctrl-C: files closed, one line
            return args.func(args)
    except KeyboardInterrupt as e:
        # Ctrl-C / SIGTERM: the command has already closed its files; one line, exit 128 + signal
        if program:  # the program is ending: a further Ctrl-C must not print a traceback
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.environ.get("SRGAN_FAST_DEBUG"):
            raise
        from ..errors import Interrupted

        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        print(f"srgan-fast {command}: {str(e) or 'interrupted'}", file=sys.stderr)
        return 128 + int(signum)
    except Exception as e:
        # user errors (bad file, bad model, unwritable folder, missing device, out of memory) end
        # with one line and exit 2; anything else is a bug and keeps its traceback (exit 1).
        # SRGAN_FAST_DEBUG=1 shows the trace of user errors too.
        from ..errors import user_message

        msg = user_message(e)
        if msg is None or os.environ.get("SRGAN_FAST_DEBUG"):
            raise
        print(f"srgan-fast {command}: error: {msg}", file=sys.stderr)
        return 2
