"""The bounds of event time, shared by sources, operators and runtimes.

Event time is an int of microseconds since the Unix epoch (UTC). These two constants live at
the ground floor so that operators and connectors need not import a runtime to name them.
"""

from __future__ import annotations

#: the watermark a bounded source emits when it ends: every window closes
WATERMARK_MAX = 2**63 - 1
#: the watermark before any event time is known
WATERMARK_MIN = -(2**63)
