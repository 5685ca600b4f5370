"""`python -m edgediff` = the `edgediff` command."""

import sys

from edgediff.cli import main

sys.exit(main())
