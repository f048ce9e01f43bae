"""`python -m genaiops` behaves like the `genaiops` console script."""

import sys

from genaiops.cli import main

if __name__ == "__main__":
    sys.exit(main())
