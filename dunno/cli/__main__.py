"""``python -m dunno.cli`` (what ``torchrun -m dunno.cli ...`` runs)."""

import sys

from dunno.cli import main

sys.exit(main())
