"""The exit status of a command of the package (cli.py's `frcnn-edu ...` and each module's `python -m ...`).

Errors are one line on stderr naming the bad value or file, never a traceback, and the status says what failed:
0 done, 1 the work failed (a download, the disk, weights that cannot be fetched), 2 bad input (an argument, a
missing or malformed file), 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def exit_status(command: Callable[[argparse.Namespace], None], args: argparse.Namespace) -> int:
    """Runs command(args); returns its exit status, having printed what went wrong (module docstring)."""
    try:
        command(args)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue (a download resumes; training with --resume)",
              file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as error:  # checked first: FileNotFoundError is an OSError too
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as error:  # a download, the disk, pretrained weights offline
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
