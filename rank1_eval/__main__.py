"""``python -m rank1_eval``: the ``rank1-eval`` command."""

import sys

from rank1_eval.cli import main

if __name__ == "__main__":
    sys.exit(main())
