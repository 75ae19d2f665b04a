"""``caudal bench``: the Nexmark benchmark suite, with DuckDB's batch time on the same events.

Importing this package registers two connectors only the harness uses, so user jobs never see
them: the ``bench`` sink (caudal.bench.sink), put in place of a query's blackhole table to
count rows and time their arrival, and the ``replay`` source (caudal.bench.replay), put in
place of the nexmark generator to stream events generated ahead of time.
"""

from caudal.connectors.registry import CONNECTORS

CONNECTORS.setdefault("bench", "caudal.bench.sink")
CONNECTORS.setdefault("replay", "caudal.bench.replay")
