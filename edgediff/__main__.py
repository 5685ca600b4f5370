"""`python -m edgediff` = the `edgediff` command."""

import sys

from .cli import main

sys.exit(main())
