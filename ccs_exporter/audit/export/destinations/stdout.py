"""Standard output: one event per line (JSON lines) for Vector, Fluent Bit or any shipper reading a pipe."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import BinaryIO

from ccs_exporter.audit.export.destinations import DestinationError, Shipment


class StdoutDestination:
    """Writes and flushes each batch; a batch is acknowledged once the pipe or file has taken it."""

    name = "stdout"

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer

    def send(self, batch: Sequence[Shipment]) -> None:
        """Write the batch's lines and flush them."""
        data = "".join(f"{item.line}\n" for item in batch).encode("utf-8")
        try:
            self._stream.write(data)
            self._stream.flush()
        except BrokenPipeError:
            raise DestinationError("standard output was closed by its reader") from None
        except OSError as exc:
            raise DestinationError(f"cannot write to standard output: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Nothing to release."""
