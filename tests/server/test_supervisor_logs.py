"""A pipeline's logs stay bounded: output.log is its stdout, so a SELECT printing for days
filled the disk with what the server only uses as a preview (nothing cut it)."""

from __future__ import annotations

import time

import caudal.server.supervisor as sup
from caudal.server.store import Store


def test_a_printing_pipeline_keeps_its_output_log_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(sup, "LOG_MAX_BYTES", 256 << 10)
    monkeypatch.setattr(sup, "LOG_KEEP_BYTES", 16 << 10)
    store = Store(tmp_path / "server.sqlite")
    pid = store.create("chatty", "CREATE TABLE t (counter BIGINT) WITH (connector = "
                                 "'impulse', event_rate = '100000');\nSELECT counter FROM t;",
                       1, "10s")
    supervisor = sup.Supervisor(store, tmp_path, tick_s=0.05)
    supervisor.start()
    log = supervisor.dir(pid) / "output.log"
    try:
        deadline = time.monotonic() + 30
        while not any(e["kind"] == "log" for e in store.events(pid)):
            assert time.monotonic() < deadline, store.events(pid)
            time.sleep(0.1)
        sizes = []
        for _ in range(20):
            sizes.append(log.stat().st_size)
            time.sleep(0.1)
    finally:
        store.update(pid, desired="stopped")
        supervisor.request_stop(pid)
        supervisor.shutdown()
    assert max(sizes) < 2 * (256 << 10), sizes
    lines = log.read_text().splitlines()
    assert lines and all(x.strip().isdigit() or x.strip() == "counter" for x in lines[:-1])
