"""``python -m galmet.cli <subcommand>``: the ``galmet`` command."""

import sys

from galmet.cli import main

sys.exit(main())
