"""``python -m galmet.cli``: the ``galmet`` command."""

import sys

from galmet.cli import main

sys.exit(main())
