"""``python -m vlx``: the ``vlx`` command (what ``torchrun -m vlx`` runs)."""

from vlx.cli import main

raise SystemExit(main())
