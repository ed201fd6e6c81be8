"""Allow ``python -m ccs_exporter``."""

from __future__ import annotations

try:
    from ccs_exporter.cli import main
except KeyboardInterrupt:  # Ctrl-C while the package is still importing: no traceback
    raise SystemExit(130) from None

raise SystemExit(main())
