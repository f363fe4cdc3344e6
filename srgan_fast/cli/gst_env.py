"""`srgan-fast gst-env`: the shell exports that let GStreamer load the srganfast element (gst)."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    g = sub.add_parser(
        "gst-env",
        help='print the shell exports that let GStreamer load the srganfast element: eval "$(srgan-fast gst-env)"',
    )
    g.add_argument(
        "--check",
        action="store_true",
        help="first check that gst-inspect-1.0 loads srganfast with these exports; if not, print the cause and the "
        "command that fixes it and exit 2 (registries are only read; a test load uses a temporary one)",
    )
    g.set_defaults(func=run)


def gst_env(check: bool = False) -> int:
    """Print the exports (stdout); with `check`, first diagnose (stderr) and print nothing on failure,
    so that `eval "$(srgan-fast gst-env --check)"` changes nothing then. Returns the exit status."""
    from ..gst import gst_env as exports
    from ..gst import gst_env_script

    env = exports()
    if check:
        from ..gst.check import diagnose

        d = diagnose(env)
        sys.stderr.write(d.report())
        if not d.ok:
            return 2
    sys.stdout.write(gst_env_script(env))
    return 0


def run(args) -> int:
    return gst_env(check=args.check)
