"""`python -m diffprims`: the same as the `diffprims` command."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
