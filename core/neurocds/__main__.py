"""``python -m neurocds`` runs the CLI."""

from neurocds.cli import main

main()
