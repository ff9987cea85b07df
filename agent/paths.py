"""Where bundled files live, in a source checkout and in an installed venv."""

from __future__ import annotations

import sys
from pathlib import Path

DEMO_MODEL = "demo_ssd_int8.tflite"
DEMO_EDGETPU_MODEL = "demo_ssd_int8_edgetpu.tflite"
DEMO_LABELS = "labels.txt"
DEMO_CATALOG = "catalog.json"


def bundled_models_dir() -> Path:
    """models/ of a source checkout, else share/basketagent/models of the install."""
    checkout = Path(__file__).resolve().parent.parent / "models"
    if (checkout / DEMO_MODEL).exists():
        return checkout
    installed = Path(sys.prefix) / "share" / "basketagent" / "models"
    if installed.exists():
        return installed
    return checkout
