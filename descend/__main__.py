"""``python -m descend``: the command line (so ``torchrun -m descend ...`` works too)."""

import sys

from .cli import main

if __name__ == "__main__":
    code = main()
    from .distributed import depart

    depart(code)  # (a worker of --nproc: out without the process group's teardown)
    sys.exit(code)
