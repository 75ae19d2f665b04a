"""The two interfaces every connector implements: Source and Sink.

A Source is split into *partitions* (files, row groups, generator shards, Kafka partitions);
the runtime assigns partitions to source subtasks and asks for offsets per partition, so a job
can resume (and rescale) from a checkpoint. A Sink follows two-phase commit: data written since
the last barrier becomes visible only at ``commit(epoch)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from caudal.plan.tables import TableSpec

#: how long an input goes without data before it stops holding the watermark back, unless
#: its table's ``idle_timeout`` option says otherwise
IDLE_TIMEOUT = "30s"


def table_token(table: TableSpec) -> str:
    """Eight hex digits identifying a table as the job declares it (name, connector, options):
    stable across runs and processes, different for tables written elsewhere."""
    import hashlib  # here: it loads OpenSSL (~3-12 ms), which most jobs never need

    text = f"{table.name.lower()}|{table.connector}|{sorted(table.options.items())!r}"
    return hashlib.sha1(text.encode()).hexdigest()[:8]


@dataclass
class SourceMetrics:
    """Counters a source keeps for the status line and the end-of-run report."""

    rows_read: int = 0
    bad_rows_dropped: int = 0
    bad_row_examples: list[str] = field(default_factory=list)


class Source(ABC):
    """Reads one table for one subtask. Created by the runtime from a TableSpec."""

    #: True when the input ends by itself (files, a generator with a count)
    bounded: bool = True
    #: True when the end of a bounded input is for good: files, a generator's count. A job
    #: that read it to the end is finished (runtime.supervisor says so when it is run
    #: again). False when a later run can find more rows after the end this one read (a
    #: log read up to its latest offset: the same command resumes there for the new rows).
    finite: bool = False
    #: metadata keys this source fills (``col TYPE METADATA FROM 'key'``): key -> what it is.
    #: The source emits a metadata column (its name in ``table.metadata``) among its
    #: ``schema``; ``table.data_schema()`` is what it decodes from the records themselves
    METADATA_KEYS: dict[str, str] = {}

    def __init__(self, table: TableSpec):
        self.table = table
        self.schema: pa.Schema = table.read_schema()
        self.metrics = SourceMetrics()
        #: which subtask of how many reads this instance (set by the runtime before
        #: ``partitions``): a source that finds new partitions while running keeps those
        #: the runtime's dealing would have given it
        self.subtask = 0
        self.parallelism = 1

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        """Check options at planning time; raise ConfigError naming the option."""

    @classmethod
    def infer_schema(cls, table: TableSpec) -> pa.Schema | None:
        """The schema when CREATE TABLE declares no columns (e.g. a Parquet file's own)."""
        return None

    @classmethod
    def default_event_time(cls, table: TableSpec) -> str | None:
        """The column that is event time when the table declares none (a generator's own
        timestamp column), with a watermark delay of zero: the source emits it in order."""
        return None

    @classmethod
    def locates_rows(cls, table: TableSpec) -> bool:
        """Whether the source can emit row locators instead of some columns and read those
        columns back by locator (``TableSpec.late_columns``): only a bounded source over
        data that does not move (files), through a ``ROW_FETCHER`` of its module."""
        return False

    @abstractmethod
    def partitions(self, parallelism: int) -> list[str]:
        """Stable names of the units of input that can be assigned to subtasks."""

    def assign(self, partitions: list[str], index: int, parallelism: int) -> list[str]:
        """The partitions subtask ``index`` of ``parallelism`` reads: every P-th, since
        partitions are independent. A source whose partitions are one ordered sequence
        (a changelog split over files) gives them all to one subtask."""
        return partitions[index::parallelism]

    @abstractmethod
    def open(self, assigned: list[str], offsets: dict[str, Any] | None = None) -> None:
        """Start reading the assigned partitions, each from its offset (None: the beginning)."""

    @abstractmethod
    def poll(self, max_rows: int, timeout: float) -> pa.RecordBatch | None:
        """Return up to ``max_rows`` rows with ``self.schema``, or None if none arrived within
        ``timeout`` seconds. Must not return rows after ``finished()`` is True."""

    @abstractmethod
    def finished(self) -> bool:
        """True once a bounded source has delivered everything assigned to it."""

    def offsets(self) -> dict[str, Any]:
        """JSON-serializable position per assigned partition, consistent with the rows
        returned so far (taken at a barrier): a new object, never one the source goes on
        updating (it is written later, on another thread; see Operator.snapshot)."""
        return {}

    def watermark(self) -> int | None:
        """The event-time watermark (µs) when the source tracks it itself, e.g. the minimum
        over its partitions of ``max event time - delay`` (a Kafka topic's partitions advance
        independently); None: the runtime takes the maximum over the batches."""
        return None

    def checkpoint_completed(self, offsets: dict[str, Any]) -> None:
        """The checkpoint that stored ``offsets`` (this subtask's) is complete: a source may
        tell the outside world (Kafka commits them to the consumer group for lag tools)."""

    def close(self) -> None:
        """Release files and connections."""


#: options of a table looked up by key (a LookupSource), with Flink's spellings as aliases
LOOKUP_OPTIONS = {
    "lookup": "'true': a plain JOIN with this table looks its rows up by key (Arroyo's "
              "style; FOR SYSTEM_TIME AS OF does so without it)",
    "lookup.cache.max_rows": "keys whose rows a lookup join caches (LRU; default 0: no "
                             "cache, every batch asks the table)",
    "lookup.cache.max-rows": "alias of lookup.cache.max_rows (Flink)",
    "lookup.partial-cache.max-rows": "alias of lookup.cache.max_rows (Flink)",
    "lookup.cache.ttl": "how long a cached key's rows are used before asking again (default: "
                        "until evicted)",
    "lookup.partial-cache.expire-after-write": "alias of lookup.cache.ttl (Flink)",
}


def lookup_cache_settings(table: TableSpec) -> tuple[int, float | None]:
    """(max cached keys, ttl in seconds or None) from a lookup table's options."""
    from caudal.durations import parse_duration_s, require_unit
    from caudal.errors import ConfigError

    rows_text = next((table.options[k] for k in ("lookup.cache.max_rows",
                      "lookup.cache.max-rows", "lookup.partial-cache.max-rows")
                      if k in table.options), "0")
    try:
        rows = int(rows_text)
        if rows < 0:
            raise ValueError
    except ValueError:
        raise ConfigError(f"lookup.cache.max_rows = {rows_text!r} in table {table.name!r}",
                          line=table.line, hint="a number of keys, 0 for no cache") from None
    ttl_key = next((k for k in ("lookup.cache.ttl", "lookup.partial-cache.expire-after-write")
                    if k in table.options), None)
    ttl_text = table.options[ttl_key] if ttl_key is not None else None
    if ttl_key is not None:  # (both are Flink's names: JDBC's and the newer one)
        require_unit(ttl_text, ttl_key, table.line)
    ttl = parse_duration_s(ttl_text, "lookup.cache.ttl") if ttl_text is not None else None
    return rows, ttl


class LookupSource(ABC):
    """Looks rows of an external table up by key, for a lookup join (the lookup join operator):
    one call per input batch with that batch's distinct keys (misses of the join's cache).
    A connector offers it as ``LOOKUP`` in its module; its options are the table's."""

    def __init__(self, table: TableSpec, keys: list[str]):
        #: ``table.read_schema()`` is what ``lookup`` returns; ``keys`` are columns of it
        self.table = table
        self.keys = list(keys)
        self.schema = table.read_schema()

    @classmethod
    def validate(cls, table: TableSpec, keys: list[str]) -> None:
        """At planning: check options and that ``keys`` can be looked up (ConfigError)."""

    @abstractmethod
    def lookup(self, keys: pa.Table) -> pa.Table:
        """Every row (``self.schema``) whose key columns equal one row of ``keys`` (distinct
        rows, columns named as ``self.keys``, no NULLs)."""

    def close(self) -> None:
        """Release connections."""


class Sink(ABC):
    """Writes one subtask's share of a table, exactly once through two-phase commit.

    The protocol (driven by the runtime and caudal.checkpoint): at each barrier
    ``pre_commit(epoch)`` makes the epoch's rows durable but invisible and returns a
    JSON-serializable state, stored in the checkpoint's manifest; once the manifest is written
    ``commit(epoch)`` makes them visible. After a crash, before the job starts again, the
    runtime creates one instance per *old* subtask, calls ``open(schema, restored=<its state
    in the manifest>)``, ``commit(<checkpoint epoch>)``, then ``abort(e)`` for every epoch
    started after the checkpoint, then ``close()``; the sinks of the new run are opened with
    ``restored=None``. A PostgreSQL sink maps this to PREPARE TRANSACTION / COMMIT PREPARED /
    ROLLBACK PREPARED with transaction ids derived from (table, subtask, epoch); a Kafka sink to
    a transactional producer per subtask.
    """

    #: True if the sink accepts a changelog (rows with retractions)
    accepts_updates: bool = False
    #: which writer of the table this instance belongs to (the id of its sink vertex, set by
    #: the runtime before ``open``). Two ``INSERT INTO`` the same table are two writers with
    #: the same subtask numbers committing the same epochs at the same time: anything a sink
    #: names per subtask (files, transaction ids) must carry the writer too, or they collide.
    writer: int = 0
    #: False when the job takes no checkpoints (set by the runtime before ``open``): nothing
    #: drives ``pre_commit``/``commit`` before the end of input, which a sink that holds
    #: rows until their commit must know to bound what it holds
    checkpointing: bool = True
    #: metadata keys this sink writes (a non-VIRTUAL metadata column of a table INSERTed
    #: into): key -> what it is; the rows it gets carry them as columns of ``table.metadata``
    METADATA_KEYS: dict[str, str] = {}
    #: True if the sink writes rows by key (upsert): the planner then sets
    #: ``table.upsert_key`` and routes each key's changes to one subtask (plan.keys)
    writes_by_key: bool = False

    def __init__(self, table: TableSpec, subtask: int, parallelism: int):
        self.table = table
        self.subtask = subtask
        self.parallelism = parallelism

    def writer_id(self) -> str:
        """A name for this instance that is the same in every run of the job and different
        for every other one: ``<table hash>-<writer>-<subtask>``. Sinks derive transaction
        ids from it, so that recovery can find what a killed run left prepared."""
        return f"{table_token(self.table)}-{self.writer}-{self.subtask}"

    @classmethod
    def validate(cls, table: TableSpec) -> None:
        """Check options at planning time; raise ConfigError naming the option."""

    @classmethod
    def check_table(cls, table: TableSpec) -> None:
        """At planning, with ``table.schema`` set to what the query writes: check that the
        external table (if it exists) fits, raising PlanError that shows both schemas. Must
        change nothing outside (EXPLAIN runs it too)."""

    @classmethod
    def takes_changelog(cls, table: TableSpec) -> bool:
        """True if this table accepts a changelog (plan.changelog): its batches then carry
        an ``_op`` column after the table's columns. Depends on options such as the format."""
        return cls.accepts_updates

    @classmethod
    def prepare(cls, table: TableSpec, resuming: bool) -> None:
        """Before the job's first subtask starts, once per table (not per subtask, nor
        again when the job restarts after a failure): check or clear what the target
        already holds, as the table's options ask. ``resuming``: the job goes on from its
        own checkpoint, so the target holds the job's own committed output, which stays and
        is appended to. Raises ConfigError (naming the table and the option) to refuse."""

    @classmethod
    def discard_orphans(cls, table: TableSpec) -> None:
        """Recovery, after every restored epoch is committed or aborted: remove what killed
        runs left half-written (hidden files, dangling transactions) that nothing will
        commit. Nothing of the job is running when this is called."""

    def open(self, schema: pa.Schema, restored: dict[str, Any] | None = None) -> None:
        """Prepare to write rows of ``schema``. ``restored`` (recovery only) is the state the
        last ``pre_commit`` of this subtask returned, so that ``commit`` can finish it."""
        self.schema = schema

    @abstractmethod
    def write(self, batch: pa.RecordBatch) -> None:
        """Buffer or write rows; they must not be visible before ``commit``."""

    def pre_commit(self, epoch: int) -> dict[str, Any]:
        """Flush what was written since the last epoch to a hidden place (or an open
        transaction) and return what is needed to commit it later: every pre-committed epoch
        not committed yet, not only this one (a checkpoint that failed is carried by the next).
        By convention a state whose ``pending`` entry is empty (or ``{}``) has nothing
        awaiting commit. Like an operator's snapshot (Operator.snapshot), the state must not
        share mutable objects with the sink: it is written later, on another thread."""
        return {}

    def commit(self, epoch: int) -> None:
        """Make the pre-committed data of ``epoch`` and earlier visible. Must be idempotent
        (it is repeated after a crash during the commit)."""

    def abort(self, epoch: int) -> None:
        """Discard the epoch's pre-committed data. Must be idempotent, and do what it can on
        an instance that never saw the epoch (recovery aborts epochs of a crashed run)."""

    def close(self) -> None:
        """End of input: the runtime has already committed the final epoch."""
