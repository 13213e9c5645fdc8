"""``python -m qtchat``: the same as the ``qtchat`` command."""

from qtchat.cli import main

raise SystemExit(main())
