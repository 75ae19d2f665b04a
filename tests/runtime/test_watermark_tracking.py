"""Watermark bookkeeping that windows rely on: a source's ``max(event time) - delay``, the
minimum over input channels, idle channels not holding it back, ended channels counting as
+infinity."""

from __future__ import annotations

import pyarrow as pa

from caudal.runtime.watermarks import InputWatermarks, SourceWatermark
from caudal.types import TIMESTAMP
from caudal.watermark import WATERMARK_MAX, WATERMARK_MIN


def test_source_watermark_trails_the_latest_event_time_and_never_goes_back():
    wm = SourceWatermark(delay_us=1_000)
    assert wm.current == WATERMARK_MIN
    assert wm.observe(pa.array([5_000, 9_000, 7_000], pa.int64()).cast(TIMESTAMP))
    assert wm.current == 8_000
    assert not wm.observe(pa.array([6_000], pa.int64()).cast(TIMESTAMP))  # disorder
    assert not wm.observe(pa.array([None], TIMESTAMP))
    assert wm.current == 8_000


def test_minimum_over_channels_with_idle_and_ended_inputs():
    marks = InputWatermarks(3)
    assert not marks.update(0, 100)  # channels 1 and 2 have said nothing yet
    marks.update(1, 50)
    assert marks.update(2, 70) and marks.current == 50
    assert marks.set_idle(1) and marks.current == 70  # an idle input stops holding it back
    assert not marks.update(1, 60)  # back with data behind the others: never goes back
    assert marks.current == 70
    marks.update(2, 200)
    assert marks.current == 70  # channel 1 (60) holds it again... but not below 70
    marks.update(1, 150)
    assert marks.current == 100
    assert marks.end(0) and marks.current == 150
    marks.set_idle(1)
    marks.set_idle(2)
    assert marks.current == 200  # all live inputs idle: the highest seen
    marks.end(1)
    marks.end(2)
    assert marks.current == WATERMARK_MAX
