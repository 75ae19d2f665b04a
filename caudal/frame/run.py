"""Running a frame: the script it stands for plus a sink, on the embedded runtime or on Ray
(``runtime="ray"``, ``address=…``: the CLI's ``--runtime ray --address``), with the CLI's
checkpoint options (``caudal run --checkpoint-dir …``)."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa

from caudal.errors import CaudalError
from caudal.plan.changelog import OP
from caudal.runtime.base import JobResult

#: keyword arguments of collect/stream/write_* that configure the run, with their defaults
RUN_OPTIONS = {"parallelism": 1, "checkpoint_dir": None, "checkpoint_interval": None,
               "fresh": False, "from_epoch": None, "max_restarts": 3, "batch_rows": 65536,
               "linger": "5ms", "runtime": "local", "address": None}
_OUT = "__caudal_out"


@contextmanager
def _said_for_frames(what: str):
    """Errors of planning, deploying and running a frame said as its user wrote it: the sink
    by the method that wrote it (``write_parquet('out')``, not the internal table
    ``__caudal_out``, nor a position in the generated SQL), the CLI's flags as run options
    (``fresh=True``, not ``--fresh``)."""
    import re

    from caudal.frame.text import python_hint, python_words

    try:
        yield
    except CaudalError as e:
        message = re.sub(r"\bsource '?_f\d+\b'?", "a source", python_words(e.message))
        if _OUT in message:
            message = message.replace(f"table '{_OUT}': ", "").replace(f"table '{_OUT}'", "table")
            message = message.replace(_OUT, "the sink")
            if not message.startswith(what):
                message = f"{what}: {message}"
            e.line = e.col = None
        e.message, e.hint = message, python_hint(e.hint)
        e.args = (message,)
        raise


def _run_settings(options: dict[str, Any]) -> SimpleNamespace:
    unknown = set(options) - set(RUN_OPTIONS)
    if unknown:
        raise CaudalError(f"unknown run option {sorted(unknown)[0]!r}",
                          hint="accepted: " + ", ".join(RUN_OPTIONS))
    settings = SimpleNamespace(**{**RUN_OPTIONS, **options})
    if settings.parallelism < 1:
        raise CaudalError("parallelism must be at least 1")
    if not settings.checkpoint_dir:   # options about checkpoints, given without any
        for name in ("checkpoint_interval", "from_epoch"):
            if options.get(name) is not None:
                raise CaudalError(f"{name} needs checkpoint_dir",
                                  hint="the directory whose checkpoints it is about")
        if options.get("fresh"):
            raise CaudalError("fresh needs checkpoint_dir",
                              hint="the directory whose checkpoints it is about")
    return settings


def _start(frame, sink_options: dict[str, Any], options: dict[str, Any], what: str):
    """Plan the frame into the sink and deploy it; the runtime, not yet run. ``what`` is
    the method that was called (``collect()``, ``write_parquet('out')``): errors name it."""
    from caudal.frame.text import options_text, quote
    from caudal.job import compile_sql
    from caudal.runtime import make_runtime

    settings = _run_settings(options)
    runtime = make_runtime(settings.runtime, settings.address, settings.batch_rows,
                           settings.linger)
    text = (frame.sql_script() + f"\nCREATE TABLE {quote(_OUT)} WITH ("
            f"{options_text(sink_options)});\nINSERT INTO {quote(_OUT)} SELECT * FROM "
            f"{quote(frame.name)};")
    with frame._plan_context():
        try:
            compiled = compile_sql(text, settings.parallelism)
        except CaudalError as e:  # a position in generated SQL would mislead: say where
            from caudal.frame.text import frame_error

            raise frame_error(e, frame, what) from None
    if settings.checkpoint_dir:
        from caudal.runtime.supervisor import attach

        runtime = attach(runtime, compiled, settings)
    runtime.deploy(compiled.graph)
    return runtime


def run_into(frame, sink_options: dict[str, Any], what: str, **options: Any) -> JobResult | None:
    """Run the frame into a table of ``sink_options`` (a connector and its options). None
    when ``checkpoint_dir`` holds this job's final checkpoint: it already ran to the end
    (as ``caudal run`` says and exits 0). ``what``: the method called, as errors name it."""
    from caudal.checkpoint.errors import JobFinished

    with _said_for_frames(what):
        try:
            runtime = _start(frame, sink_options, options, what)
        except JobFinished:
            return None
        return _warned(runtime.run())


def _warned(result: JobResult) -> JobResult:
    """Rows dropped by UDFs (``on_error="drop"``) are said, as ``caudal run`` says them."""
    from caudal.plan.functions.python_udf import ROWS_DROPPED

    dropped = result.metrics.get(ROWS_DROPPED, 0)
    if dropped:
        import warnings

        warnings.warn(f"caudal: {dropped:,} input rows dropped by UDFs with on_error='drop'",
                      stacklevel=3)
    return result


def _collector(frame):
    from caudal.connectors import python as python_connector

    base = hashlib.sha1(frame.sql_script().encode()).hexdigest()[:12]
    for i in range(1000):  # the same query collected twice at once gets another name
        handle = f"out-{base}-{i}"
        if handle not in python_connector.COLLECTORS:
            collector = python_connector.Collector()
            python_connector.COLLECTORS[handle] = collector
            return handle, collector
    raise CaudalError("too many concurrent collects of one query")


def collect(frame, **options: Any) -> pa.Table:
    from caudal.connectors import python as python_connector

    handle, collector = _collector(frame)
    try:
        with _said_for_frames("collect()"):
            _warned(_start(frame, {"connector": "python", "handle": handle}, options,
                           "collect()").run())
        if collector.batches:  # a changelog's batches carry _op after the columns
            table = pa.Table.from_batches(collector.batches)
        else:
            table = (collector.schema or frame.schema).empty_table()
    finally:
        python_connector.COLLECTORS.pop(handle, None)
    if OP in table.column_names:
        table = fold(table)
    return table


_END = object()


def stream(frame, **options: Any) -> Iterator[pa.RecordBatch]:
    from caudal.connectors import python as python_connector

    handle, collector = _collector(frame)
    with _said_for_frames("stream()"):
        runtime = _start(frame, {"connector": "python", "handle": handle}, options, "stream()")
    failure: list[BaseException] = []

    def run() -> None:
        try:
            runtime.run()
        except BaseException as e:  # handed to the consumer
            failure.append(e)
        finally:
            collector.queue.put(_END)

    thread = threading.Thread(target=run, name="caudal-stream", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = collector.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is _END:
                break
            yield item
        if failure:
            with _said_for_frames("stream()"):
                raise failure[0]
    finally:
        if thread.is_alive():  # the consumer stopped early
            runtime.stop()
            thread.join(10)
        python_connector.COLLECTORS.pop(handle, None)


def fold(changes: pa.Table | None) -> pa.Table | None:
    """The rows a changelog leaves: each distinct row repeated by its net weight (the ``_op``
    column's sign). Fails if a row's net weight is negative (a retraction of something never
    inserted). Rows are compared whole, nested columns (lists, structs, maps) included, by the
    netting the updating join uses (``keyed_tables.net_rows``)."""
    from caudal.operators.keyed_tables import NET, net_rows

    if changes is None:
        return None
    data = changes.drop_columns([OP])
    if changes.num_rows == 0:
        return data
    w = np.sign(changes.column(OP).to_numpy()).astype(np.int64)
    names = data.column_names
    netted = net_rows(data.append_column(NET, pa.array(w)), names, data.schema)
    net = netted.column(NET).to_numpy()
    if (net < 0).any():
        raise AssertionError(f"negative net weight for {netted.filter(pa.array(net < 0))}")
    rows = netted.select(names)
    return rows.take(pa.array(np.repeat(np.arange(len(net)), np.maximum(net, 0))))
