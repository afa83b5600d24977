"""``python -m rank1_eval.cli``: the ``rank1-eval`` command."""

import sys

from rank1_eval.cli import main

if __name__ == "__main__":
    sys.exit(main())
