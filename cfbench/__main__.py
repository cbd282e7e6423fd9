"""``python -m cfbench``: the same command line as the ``cfbench`` script."""

import sys

from cfbench.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
