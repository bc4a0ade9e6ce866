"""``python -m napari_attnseg.cli ...`` (e.g. under ``torchrun``) is the ``attnseg`` command."""

import sys

from . import main

sys.exit(main())
