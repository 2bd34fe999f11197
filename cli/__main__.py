"""``python -m cli`` runs the CLI, as the ``brigade`` console script does."""

from cli.main import main

main()
