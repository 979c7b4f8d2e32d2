"""``python -m gblend``: the same as the ``gblend`` console script."""

import sys

from gblend.cli import main

sys.exit(main())
