"""`python -m lewm_core` runs the `lewm` command line."""

import sys

from lewm_core.cli.main import main

sys.exit(main())
