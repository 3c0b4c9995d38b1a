"""``python -m symfuse``: the ``symfuse`` command."""
from .cli import main

main()
