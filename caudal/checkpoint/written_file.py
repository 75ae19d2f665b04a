"""What is known of a state file once the storage has written it: where it is, its size and
CRC-32 (checked on restore, so a truncated or damaged file is found instead of restoring
wrong state) and its rows. The storage returns it and the manifest records it; it lives
apart from both so that neither imports the other for it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WrittenFile:
    """What the manifest records about one file, to find it and check it on restore."""

    path: str
    bytes: int
    crc32: int
    rows: int = 0
