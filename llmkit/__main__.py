"""``python -m llmkit``: the same as the ``llmkit`` command."""

from .cli import main

raise SystemExit(main())
