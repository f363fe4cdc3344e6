"""`python -m srgan_fast ...` and the `srgan-fast` program (its console-script entry point).

The command line interface (srgan_fast.cli) imports torch, about a second; here that import
happens inside main(), so a Ctrl-C during it ends like a Ctrl-C anywhere later, with one line and
exit 130, not a traceback of the import it cut short.
"""

from __future__ import annotations

import signal
import sys


def main() -> int:
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while exiting: no traceback either
        command = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else ""
        print(f"srgan-fast{' ' + command if command else ''}: interrupted", file=sys.stderr)
        return 128 + int(signal.SIGINT)
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
