"""``python -m brigade`` runs the CLI, as the ``brigade`` console script does."""

from brigade.cli import main

main()
