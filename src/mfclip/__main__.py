"""``python -m mfclip`` (also what ``torchrun -m mfclip`` runs)."""

import sys

from .cli import main

sys.exit(main())
