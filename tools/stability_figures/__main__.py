"""Entry point: ``python -m tools.stability_figures``."""

from __future__ import annotations

import sys

from tools.stability_figures.cli import main

sys.exit(main())
