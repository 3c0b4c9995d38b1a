"""``python -m symfuse.cli``: the ``symfuse`` command (also how ``symfuse time``
starts its measured child processes)."""
from . import main

main()
