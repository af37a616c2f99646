"""``python -m llm_async.observability.dashboard``: the ``llm-async dashboard`` command."""

from .cli import main

raise SystemExit(main())
