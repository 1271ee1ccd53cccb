"""``python -m modelbus``: the ``modelbus`` command (how worker processes are started)."""

from modelbus.cli import main

main()
