"""``python -m fewops.cli``: the same as the ``fewops`` command."""

import sys

from fewops.cli.main import main

sys.exit(main())
