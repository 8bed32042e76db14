"""``python -m newproxy``: the same as the ``newproxy`` command."""

from newproxy.cli import main

raise SystemExit(main())
