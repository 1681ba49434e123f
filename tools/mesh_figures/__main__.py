"""Entry point: ``python -m tools.mesh_figures``."""

from __future__ import annotations

import sys

from tools.mesh_figures.cli import main

sys.exit(main())
