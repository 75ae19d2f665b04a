"""A filesystem sink that fails on purpose, to test restarts inside one process: it raises
once it has written ``fail_after`` rows, the first time only (``marker`` records that it
did), or every time when ``always`` is set. Registered as connector ``flaky`` by
``run_with_flaky``."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa

from caudal.connectors.filesystem import FileSystemSink


class FlakySink(FileSystemSink):
    OPTIONS = {**FileSystemSink.OPTIONS, "fail_after": "rows before failing",
               "marker": "file created when failing; no failure once it exists",
               "always": "true: fail in every attempt"}

    def write(self, batch: pa.RecordBatch) -> None:
        super().write(batch)
        marker = Path(self.table.options["marker"])
        always = self.table.options.get("always") == "true"
        if self.rows >= int(self.table.options["fail_after"]) and (always or not
                                                                     marker.exists()):
            marker.touch()
            raise OSError("the disk went away (on purpose)")


SINK = FlakySink


def run_with_flaky(argv: list[str]) -> int:
    from caudal.cli import main
    from caudal.connectors import registry

    registry.CONNECTORS["flaky"] = __name__
    return main(argv)


if __name__ == "__main__":
    sys.exit(run_with_flaky(sys.argv[1:]))
