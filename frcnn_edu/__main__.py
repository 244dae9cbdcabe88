"""`python -m frcnn_edu ...`: the frcnn-edu command (cli.py)."""
import sys

from .cli import main

sys.exit(main())
