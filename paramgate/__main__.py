"""``python -m paramgate`` runs the command-line interface."""

import sys

from paramgate.cli import main

sys.exit(main())
