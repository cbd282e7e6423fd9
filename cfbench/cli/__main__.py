"""``python -m cfbench.cli``: the same as the ``cfbench`` command."""

import sys

from cfbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
