"""Shared test set-up: an offscreen Qt platform before Qt loads, and one qasync loop."""

import os

# Without a display Qt aborts the whole run (exit 134); set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
