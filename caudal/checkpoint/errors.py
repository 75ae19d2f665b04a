"""The errors a user sees about checkpoints: damaged files, another job's directory, a
directory in use. Each message says what to do next."""

from __future__ import annotations

from caudal.errors import CaudalError


class CheckpointError(CaudalError):
    """A checkpoint cannot be written or restored; the message says how to proceed."""


class IncompatibleCheckpoint(CheckpointError):
    """The checkpoint directory holds checkpoints of a different job (or an older dataflow
    of this one), whose state cannot be mapped onto the current dataflow."""


class OtherJobCheckpoint(IncompatibleCheckpoint):
    """The newest checkpoint's job fingerprint is not this dataflow's: another job, or this
    one planned into another graph (the job server words a refused rescale from it)."""


class JobFinished(CheckpointError):
    """Not a failure: the checkpoint directory holds the final checkpoint of this job (it ran
    to the end of every input), so running it again would only emit nothing. The CLI prints
    the message and exits 0."""

    exit_code = 0


class DamagedCheckpoint(CheckpointError):
    """A completed checkpoint's manifest or one of its state files is unreadable, truncated
    or missing."""
