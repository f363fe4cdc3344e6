"""`srgan-fast gst-env`: the shell exports that let GStreamer load the srganfast element (gst)."""

from __future__ import annotations

import os
import sys


def add_parser(sub) -> None:
    g = sub.add_parser(
        "gst-env",
        help='print the shell exports that let GStreamer load the srganfast element: eval "$(srgan-fast gst-env)"',
    )
    g.add_argument(
        "--check", action="store_true", help="first check that gst-inspect-1.0 loads srganfast (exit 2 if not)"
    )
    g.set_defaults(func=run)


def run(args) -> int:
    from ..gst import gst_env, gst_env_script, missing

    env = gst_env()
    if args.check:  # before printing: a shell that evals the output gets nothing on failure
        import subprocess

        why = missing()
        if why is None:
            r = subprocess.run(["gst-inspect-1.0", "srganfast"], env={**os.environ, **env}, capture_output=True,
                               text=True)  # fmt: skip
            why = None if r.returncode == 0 else "gst-inspect-1.0 cannot load srganfast:\n" + (r.stderr or r.stdout)
        if why is not None:
            print(f"srgan-fast gst-env: {why}", file=sys.stderr)
            return 2
    sys.stdout.write(gst_env_script(env))
    return 0
