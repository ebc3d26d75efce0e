"""`python -m pushctl ...` (run from the repository root)."""

import sys

from pushctl.cli import main

if __name__ == "__main__":
    sys.exit(main())
