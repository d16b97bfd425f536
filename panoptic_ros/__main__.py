"""``python -m panoptic_ros`` = ``panoptic-ros``."""

from __future__ import annotations

import sys

from panoptic_ros.cli.main import main

sys.exit(main())
