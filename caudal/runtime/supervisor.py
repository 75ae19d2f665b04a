"""A runtime wrapper that makes a job survive failures and stop cleanly (any runtime: local
threads or Ray actors; ``attach`` is how the CLI turns a runtime into a checkpointed one).

- At deploy it claims the checkpoint directory, finishes the two-phase commit of the newest
  checkpoint and restores every subtask from it (checkpoint.recovery). A job whose newest
  checkpoint is final (every source read to its end) and whose sources cannot grow
  (Source.finite: files, generators; not a log read up to its latest offset) has nothing
  left to do: deploy says so (JobFinished) instead of running it to emit no row. Sinks check their targets once, before
  the first run (Sink.prepare: a job from scratch may find an earlier run's output).
- When an operator fails (an exception), the job is cancelled, and after a backoff it is
  deployed again from the last complete checkpoint, up to ``max_restarts`` times. User errors
  (bad SQL, bad data under ``bad_data = 'fail'``, bad options) are not retried: they would
  fail again the same way.
- Ctrl-C or SIGTERM takes a savepoint (a checkpoint whose barrier also stops the sources),
  commits the sinks and returns normally; a second Ctrl-C stops at once. A repeated SIGTERM
  is the same request: the parent-death signal of a killed ``caudal serve`` comes once per
  thread of the server as each ends, and a service manager and the server both send one.
- SIGUSR1 takes a checkpoint now, without waiting for the interval (and goes on).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from caudal.checkpoint import DEFAULT_INTERVAL
from caudal.checkpoint.coordinator import CheckpointCoordinator, kept_manifests, sweep, warn
from caudal.checkpoint.errors import CheckpointError, IncompatibleCheckpoint, JobFinished
from caudal.checkpoint.listing import human_bytes
from caudal.checkpoint.manifest import completed_epochs
from caudal.checkpoint.recovery import (
    Restored,
    check_partitions,
    choose_checkpoint,
    identify,
    load_state,
    prepare_directory,
    recover_sinks,
)
from caudal.checkpoint.storage import CheckpointStorage
from caudal.connectors.registry import prepare_sinks
from caudal.durations import parse_duration_s
from caudal.errors import ConfigError, RuntimeFailure
from caudal.plan.physical import PhysicalGraph
from caudal.runtime.base import JobResult, Runtime, SubtaskStats

#: the number of key groups of keyed state (fixed: part of the checkpoint format)
MAX_KEY_GROUPS = 128
#: first restart delay; doubles per restart up to MAX_BACKOFF_S
BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0


@dataclass
class CheckpointSettings:
    uri: str
    interval_s: float = parse_duration_s(DEFAULT_INTERVAL, "checkpoint interval")
    fresh: bool = False
    max_restarts: int = 3
    from_epoch: int | None = None
    keep: int = 3
    sync: bool = True
    sql: str = ""


class CheckpointedRuntime(Runtime):
    """Runs a job on an inner runtime (LocalRuntime), with checkpoints and restarts."""

    def __init__(self, runtime: Any, factory: Callable[[], Any], settings: CheckpointSettings,
                 log: Callable[[str], None] = warn):
        self.current = runtime
        self.factory = factory
        self.settings = settings
        self.log = log
        self.graph: PhysicalGraph | None = None
        self.storage = CheckpointStorage(settings.uri, sync=settings.sync)
        self.coordinator: CheckpointCoordinator | None = None
        self.restored: Restored | None = None
        self.restarts = 0
        self._triggered = 0
        self._stopping = False
        self._first = True
        #: the sinks checked (or cleared) for a run from scratch before --fresh
        self._sinks_prepared = False

    # ---- what the CLI's status line reads -------------------------------------------------

    @property
    def runners(self) -> list[Any]:
        return self.current.runners

    def stats(self) -> list[SubtaskStats]:
        return self.current.stats()

    # ---- deploy ---------------------------------------------------------------------------

    def deploy(self, graph: PhysicalGraph, restore_from: str | None = None) -> None:
        self.graph = graph
        self.ident = identify(graph)
        try:
            self._triggered = prepare_directory(self.storage, graph, self.ident,
                                                self.settings.sql, self.settings.fresh,
                                                before_fresh=self._prepare_sinks_fresh)
            self._setup(self.current)
        except BaseException:
            # a refused checkpoint directory (another job's, a bad --from-epoch) is free
            # again: a Python process (a frame's collect) goes on and may run it fixed
            self.storage.unlock()
            raise

    def _prepare_sinks_fresh(self) -> None:
        assert self.graph is not None
        prepare_sinks(self.graph, resuming=False)
        self._sinks_prepared = True

    def _setup(self, runtime: Any) -> None:
        """Restore ``runtime`` from the newest complete checkpoint and attach a coordinator."""
        graph = self.graph
        assert graph is not None
        if self.coordinator is not None:
            self._triggered = max(self._triggered, self.coordinator.next_epoch - 1)
        first, self._first = self._first, False
        manifest = choose_checkpoint(self.storage, graph, self.ident,
                                     self.settings.from_epoch if first else None)
        if manifest is not None and manifest.max_key_groups != MAX_KEY_GROUPS:
            raise IncompatibleCheckpoint(
                f"checkpoint {manifest.epoch} uses {manifest.max_key_groups} key groups, this "
                f"version of caudal {MAX_KEY_GROUPS}; run with --fresh to start over")
        if manifest is not None:
            self._check_sources(manifest)
        if first and not self._sinks_prepared:  # once: a restart after a failure finds
            prepare_sinks(graph, resuming=manifest is not None)  # the target as it left it
        finished = first and manifest is not None and manifest.final and self._finite()
        # the state read (and every file but the whole tables operators decode themselves
        # checksummed) before the sinks commit what the checkpoint pre-committed: a damaged
        # file stops the resume with the output as the killed run left it
        restored = load_state(self.storage, manifest, graph) \
            if manifest is not None and not finished else None
        recover_sinks(manifest, graph, self._triggered, self.storage)
        if finished:
            # (recover_sinks has committed its last rows, in case the run that wrote it was
            # killed before its sinks did)
            self.storage.unlock()
            raise JobFinished(
                f"the job already finished: its final checkpoint {manifest.epoch} in "
                f"{self.settings.uri} holds the end of every input; nothing to do (run with "
                f"--fresh to run it again)")
        self.restored = restored
        if manifest is not None and self.restored is not None:
            self.log(f"resuming from {'savepoint' if manifest.savepoint else 'checkpoint'} "
                     f"{manifest.epoch} in {self.settings.uri} ({human_bytes(manifest.bytes)} "
                     f"of state read in {self.restored.seconds:.2f}s)")
            newest = completed_epochs(self.storage)
            if first and self.settings.from_epoch is not None and newest[-1] > manifest.epoch:
                # the sinks committed the epochs after it, and cannot take them back
                self.log(f"checkpoint {manifest.epoch} is older than the newest ({newest[-1]}):"
                         f" rows the sinks committed after it are written again")
        kept = kept_manifests(self.storage, self.settings.keep)
        if manifest is not None and manifest.epoch not in {m.epoch for m in kept}:
            kept.append(manifest)
        coordinator = CheckpointCoordinator(
            self.storage, graph, self.ident.fingerprint, self.ident.vertices,
            interval_s=self.settings.interval_s, first_epoch=self._triggered + 1,
            committed_epoch=manifest.epoch if manifest else 0, keep=self.settings.keep,
            max_key_groups=MAX_KEY_GROUPS,
            chains=self.restored.chains if self.restored else None, kept=kept, log=self.log)
        # leftovers of a crash (epochs started after the checkpoint) and old checkpoints
        sweep(self.storage, self._triggered, {m.epoch for m in kept}, coordinator.referenced())
        runtime.job.checkpoints = coordinator
        runtime.job.restored = self.restored.payloads if self.restored else {}
        runtime.deploy(graph)
        if self.restored is not None:
            # (each operator waited for the checksums of what it restored; any left over)
            self.restored.checked()
        # every subtask took its state while it was deployed: the restored tables (as large
        # as the whole state, which the operators have copied into their own structures)
        # are not kept alive for the job's life
        runtime.job.restored = {}
        if self.restored is not None:
            self.restored.payloads.clear()
        self.current = runtime
        self.coordinator = coordinator

    def _finite(self) -> bool:
        """Every source's end is for good (Source.finite): a final checkpoint then means
        there is nothing left to read, now or later."""
        from caudal.connectors.registry import source_class

        assert self.graph is not None
        return all(source_class(v.source).finite for v in self.graph.vertices
                   if v.source is not None)

    def _check_sources(self, manifest: Any) -> None:
        assert self.graph is not None
        check_sources(self.graph, manifest)

    # ---- run ------------------------------------------------------------------------------

    @property
    def restored_epoch(self) -> int | None:
        return self.restored.manifest.epoch if self.restored else None

    def run(self) -> JobResult:
        previous = self._install_signals()
        try:
            return self._run()
        finally:
            self._restore_signals(previous)
            if self.coordinator is not None:
                self.coordinator.close(wait=True)
            self.storage.unlock()

    def _run(self) -> JobResult:
        while True:
            coordinator = self.coordinator
            assert coordinator is not None
            coordinator.start(self.current.job.cancel)
            if self._stopping:
                coordinator.request_stop()
            try:
                result = self.current.run()
            except RuntimeFailure as e:
                coordinator.close(wait=True)
                if not self.current.wait(10):
                    raise RuntimeFailure(f"{e.message} (and its threads did not stop: not "
                                         f"restarting)") from e
                if isinstance(e.__cause__, BrokenPipeError):
                    raise  # the reader of stdout went away: a restart cannot bring it back
                if self._stopping or self.restarts >= self.settings.max_restarts:
                    if self.restarts:
                        raise RuntimeFailure(f"{e.message} (after {self.restarts} restarts)",
                                             hint="--max-restarts allows more") from e
                    raise
                self.restarts += 1
                delay = min(BACKOFF_S * 2 ** (self.restarts - 1), MAX_BACKOFF_S)
                since = coordinator.committed_epoch()
                self.log(f"job failed: {e.message}; restarting from "
                         + (f"checkpoint {since}" if since else "the beginning")
                         + f" in {delay:.1f}s (restart {self.restarts} of "
                           f"{self.settings.max_restarts})")
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline and not self._stopping:
                    time.sleep(0.05)
                if self._stopping:
                    raise
                self._setup(self.factory())
                continue
            coordinator.close(wait=True)
            summary = coordinator.summary()
            if summary:
                self.log(summary)
            if coordinator.stop_epoch is not None:
                if coordinator.stop_error is not None:
                    raise CheckpointError(
                        f"the savepoint failed ({coordinator.stop_error}); a resumed run "
                        f"will start from checkpoint {coordinator.committed_epoch()}")
                if coordinator.committed_epoch() >= coordinator.stop_epoch:
                    self.log(f"stopped with savepoint {coordinator.stop_epoch} in "
                             f"{self.settings.uri} (run the same command to resume)")
            return result

    def stop(self, savepoint: bool = False) -> None:
        if savepoint and self.coordinator is not None:
            self._stopping = True
            self.coordinator.request_stop()
        else:
            self.current.stop()

    # ---- signals --------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stopping:
            if signum == signal.SIGTERM:
                return  # the same request again (the module's docstring says who repeats it)
            raise KeyboardInterrupt
        self.log("stopping: taking a savepoint (press Ctrl-C again to stop at once)")
        self.stop(savepoint=True)

    def _on_checkpoint_signal(self, signum: int, frame: Any) -> None:
        if self.coordinator is not None:
            self.coordinator.request_checkpoint()

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, self._on_signal)
        previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._on_checkpoint_signal)
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def wait(self, timeout: float | None = None) -> bool:
        return self.current.wait(timeout)


def attach(runtime: Any, compiled: Any, args: Any) -> CheckpointedRuntime:
    """Wrap ``runtime`` (not yet deployed) so that ``deploy`` restores from
    ``args.checkpoint_dir`` and ``run`` checkpoints every ``args.checkpoint_interval``."""
    interval = parse_duration_s(getattr(args, "checkpoint_interval", None) or DEFAULT_INTERVAL,
                                "--checkpoint-interval")
    if interval <= 0:
        raise ConfigError("--checkpoint-interval must be positive", hint="e.g. 10s or 500ms")
    if getattr(args, "max_restarts", 0) < 0:
        raise ConfigError("--max-restarts must be 0 or more")
    sql = compiled.sql  # a CompiledJob's or a CompiledPlan's (caudal.plan_file)
    settings = CheckpointSettings(
        uri=args.checkpoint_dir, interval_s=interval, fresh=bool(getattr(args, "fresh", False)),
        max_restarts=int(getattr(args, "max_restarts", 3)),
        from_epoch=getattr(args, "from_epoch", None), sql=sql)

    def factory() -> Any:
        return runtime.fresh()

    return CheckpointedRuntime(runtime, factory, settings)


def check_sources(graph: PhysicalGraph, manifest: Any) -> None:
    """Refuse (IncompatibleCheckpoint) to restore ``manifest`` into ``graph`` when a source's
    checkpointed partitions do not exist at the graph's parallelism."""
    from caudal.connectors.registry import source_class

    for v in graph.vertices:
        old = manifest.vertex(v.id)
        if v.source is None or old is None:
            continue
        offsets: dict[str, Any] = {}
        for st in old.subtasks:
            offsets.update(st.offsets or {})
        parts = source_class(v.source)(v.source).partitions(v.parallelism)
        check_partitions(v.source.name, parts, offsets, old.parallelism, v.parallelism)


def check_restorable(graph: PhysicalGraph, uri: str) -> bool:
    """What a run of ``graph`` with ``--checkpoint-dir uri`` would refuse at deploy: the
    newest checkpoint belongs to another job, or its sources cannot resume at this
    parallelism (the job server checks a rescale with it before stopping the job). False
    when there is no complete checkpoint to check."""
    storage = CheckpointStorage(uri)
    manifest = choose_checkpoint(storage, graph, identify(graph))
    if manifest is not None:
        check_sources(graph, manifest)
    return manifest is not None
