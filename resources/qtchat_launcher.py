"""Entry script of the PyInstaller bundle (see qtchat.spec): run the ``qtchat`` command.

PyInstaller needs a script, not an entry point; this is what pip's ``qtchat``
console script does, so the bundle and ``pip install`` start the app the same way.
"""

from qtchat.cli import main

raise SystemExit(main())
