"""Allow ``python -m ccs_exporter``."""

from __future__ import annotations

from ccs_exporter.cli import main

raise SystemExit(main())
