"""``python -m slnn.check FILE.py:FUNC``: the same as ``slnn-check``."""

import sys

from slnn.check.cli import main

sys.exit(main())
