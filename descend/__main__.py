"""``python -m descend``: the command line (so ``torchrun -m descend ...`` works too)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
