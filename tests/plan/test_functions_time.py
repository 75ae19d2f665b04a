"""Date and time functions and arithmetic, in UTC, against DuckDB (TimeZone = UTC)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from caudal.errors import PlanError, RuntimeFailure
from caudal.plan.functions.time import pg_format
from tests.plan.sql_eval import bind, caudal_eval, check, values

UTC = dt.UTC

AGREE = [
    ("date_trunc('hour', ts)", None), ("date_trunc('minute', ts)", None),
    ("date_trunc('second', ts)", None), ("date_trunc('day', ts)", None),
    ("date_trunc('week', ts)", None), ("date_trunc('month', ts)", None),
    ("date_trunc('quarter', ts)", None), ("date_trunc('year', ts)", None),
    ("date_trunc('milliseconds', ts)", None), ("date_trunc('decade', ts)", None),
    ("date_trunc('year', dt)", "CAST(date_trunc('year', dt) AS TIMESTAMPTZ)"),
    ("extract(year FROM ts)", None), ("extract(month FROM ts)", None),
    ("extract(day FROM ts)", None), ("extract(hour FROM ts)", None),
    ("extract(minute FROM ts)", None), ("extract(dow FROM ts)", None),
    ("extract(isodow FROM ts)", None), ("extract(doy FROM ts)", None),
    ("extract(week FROM ts)", None), ("extract(quarter FROM ts)", None),
    ("extract(isoyear FROM ts)", None), ("extract(decade FROM ts)", None),
    ("extract(century FROM ts)", None), ("extract(millennium FROM ts)", None),
    ("extract(epoch FROM ts)", None), ("extract(microseconds FROM ts)", None),
    ("date_part('month', dt)", None), ("date_part('year', ts)", None),
    ("extract(epoch FROM INTERVAL '1 hour 30 minutes')", None),
    ("to_timestamp(i)", None), ("to_timestamp(f)", None),
    ("ts + INTERVAL '1 day 2 hours'", None), ("ts - INTERVAL '30' MINUTE", None),
    ("INTERVAL '1' SECOND + ts", None), ("ts + INTERVAL '1.5' SECOND", None),
    ("dt + 1", None), ("dt - 7", None), ("1 + dt", None), ("dt - DATE '2000-01-01'", None),
    ("ts - TIMESTAMP '2020-01-01 00:00:00'", None), ("dt + INTERVAL '1 hour'", None),
    ("INTERVAL '1 hour' * 2", None), ("2 * INTERVAL '1 hour'", None),
    ("INTERVAL '1 hour' / 4", None), ("-INTERVAL '1 hour'", None),
    ("ts < TIMESTAMP '2021-01-01'", None), ("dt < ts", None), ("ts = dt", None),
    ("make_date(2020, 2, 29)", None), ("make_date(i + 2000, 1, 1)", None),
    ("to_date('2020-03-04', 'YYYY-MM-DD')", "strptime('2020-03-04', '%Y-%m-%d')::DATE"),
    ("to_char(ts, 'YYYY-MM-DD HH24:MI:SS')", "strftime(ts, '%Y-%m-%d %H:%M:%S')"),
    ("to_char(ts, 'DD/MM/YY HH12:MI AM')", "strftime(ts, '%d/%m/%y %I:%M %p')"),
    ("to_timestamp('2020-01-02 03:04:05', 'YYYY-MM-DD HH24:MI:SS')",
     "strptime('2020-01-02 03:04:05', '%Y-%m-%d %H:%M:%S')::TIMESTAMPTZ"),
]


@pytest.mark.parametrize("sql,duck_sql", AGREE)
def test_time_matches_duckdb(sql, duck_sql):
    check(sql, duck_sql=duck_sql)


def test_centuries_start_in_year_one():
    # PostgreSQL: the 21st century and 3rd millennium begin 2001-01-01 (DuckDB: 2000)
    assert values("date_trunc('century', ts)")[:4] == [
        dt.datetime(2001, 1, 1, tzinfo=UTC), None, dt.datetime(2001, 1, 1, tzinfo=UTC),
        dt.datetime(1901, 1, 1, tzinfo=UTC)]
    assert values("date_trunc('millennium', ts)")[3] == dt.datetime(1001, 1, 1, tzinfo=UTC)


def test_extract_seconds_keep_the_fraction():
    # PostgreSQL: extract(second ...) is 59.5 (numeric), DuckDB truncates to 59
    assert values("extract(second FROM ts)") == [5.0, None, 59.5, 0.0, 0.123456, 0.0]
    assert values("extract(millisecond FROM ts)")[:3] == [5000.0, None, 59500.0]
    assert bind("extract(second FROM ts)").dtype == pa.float64()
    assert bind("extract(hour FROM ts)").dtype == pa.int64()


def test_extract_from_intervals():
    assert values("extract(minute FROM INTERVAL '1 hour 30 minutes')")[0] == 30
    assert values("extract(hour FROM INTERVAL '1 hour 30 minutes')")[0] == 1
    assert values("extract(day FROM INTERVAL '50 hours')")[0] == 2
    assert values("extract(hour FROM INTERVAL '-1 hour')")[0] == -1
    assert values("extract(second FROM INTERVAL '1.5 seconds')")[0] == 1.5


def test_interval_literals():
    assert values("INTERVAL '10' SECOND")[0] == dt.timedelta(seconds=10)
    assert values("INTERVAL '1 minute'")[0] == dt.timedelta(minutes=1)
    assert values("INTERVAL '1 hour 30 minutes'")[0] == dt.timedelta(minutes=90)
    assert values("INTERVAL '00:00:10'")[0] == dt.timedelta(seconds=10)
    assert values("INTERVAL '2' DAY")[0] == dt.timedelta(days=2)
    assert values("INTERVAL '1 week'")[0] == dt.timedelta(days=7)
    assert values("INTERVAL '500' MILLISECOND")[0] == dt.timedelta(milliseconds=500)
    assert bind("INTERVAL '10' SECOND").dtype == pa.duration("us")
    with pytest.raises(PlanError, match="months or years") as err:
        bind("ts +\n  INTERVAL '1' MONTH")
    assert err.value.line == 2
    with pytest.raises(PlanError, match="invalid input syntax for type interval"):
        bind("INTERVAL 'soon'")


def test_date_and_timestamp_literals():
    assert values("DATE '2020-01-01'")[0] == dt.date(2020, 1, 1)
    assert values("TIMESTAMP '2020-01-01 10:00:00'")[0] == dt.datetime(2020, 1, 1, 10,
                                                                      tzinfo=UTC)
    assert bind("DATE '2020-01-01'").dtype == pa.date32()
    with pytest.raises(PlanError, match="DATE"):
        bind("DATE '2020-13-01'")


def test_to_timestamp_formats():
    assert values("to_timestamp('02/01/2020 03:04:05.123', 'DD/MM/YYYY HH24:MI:SS.MS')")[0] \
        == dt.datetime(2020, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
    assert values("to_timestamp('2020-01-02T03:04:05', 'YYYY-MM-DD\"T\"HH24:MI:SS')")[0] == \
        dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert values("to_timestamp(1.5)")[0] == dt.datetime(1970, 1, 1, 0, 0, 1, 500000,
                                                         tzinfo=UTC)
    with pytest.raises(RuntimeFailure, match="does not match the format"):
        caudal_eval("to_timestamp(s, 'YYYY-MM-DD')")



@pytest.mark.parametrize("function", ["to_date", "to_timestamp"])
def test_text_that_does_not_match_the_template_is_named(function):
    """The message named Polars' internals ("conversion from `str` to `date` failed in column
    'c0' for 2 out of 4 values: [...]") instead of the text and the template."""
    table = pa.table({"s": ["2020-01-02", "abc", None, "2020-13-45"]})
    with pytest.raises(RuntimeFailure) as e:
        caudal_eval(f"{function}(s, 'YYYY-MM-DD')", table)
    assert e.value.message == (f"{function}(): the text 'abc' does not match the format "
                               f"(nor does 1 more value) in {function.upper()}(s, "
                               "'YYYY-MM-DD')"), e.value.message

def test_pg_format_patterns():
    assert pg_format("YYYY-MM-DD HH24:MI:SS.US") == "%Y-%m-%d %H:%M:%S.%6f"
    assert pg_format("yyyy-mm-dd hh24:mi:ss.ms", parsing=True) == "%Y-%m-%d %H:%M:%S%.f"
    assert pg_format('Day, DD Mon "at" FMHH12 AM %') == "%A, %d %b at %-I %p %%"


def test_to_char_names():
    assert values("to_char(ts, 'Dy DD Mon YYYY')")[0] == "Thu 02 Jan 2020"
    assert values("to_char(ts, 'FMDay, FMMonth FMDD')")[0] == "Thursday, January 2"
    assert values("to_char(ts, 'HH24:MI:SS.MS')")[2] == "23:59:59.500"


def test_make_date_out_of_range():
    with pytest.raises(RuntimeFailure, match="out of range"):
        caudal_eval("make_date(2021, 2, 29)")
    assert values("make_timestamp(2020, 2, 29, 10, 11, 12.5)")[0] == dt.datetime(
        2020, 2, 29, 10, 11, 12, 500000, tzinfo=UTC)


def test_now_is_processing_time():
    before = dt.datetime.now(UTC)
    got = values("now()")
    after = dt.datetime.now(UTC)
    assert len(set(got)) == 1 and before <= got[0] <= after
    assert values("current_timestamp")[0] >= before
    assert values("current_date")[0] == dt.datetime.now(UTC).date()


def test_time_errors():
    with pytest.raises(PlanError, match="date_trunc\\(\\) does not know unit 'fortnight'"):
        bind("date_trunc('fortnight', ts)")
    with pytest.raises(PlanError, match="extract\\(\\) does not know field 'color'"):
        bind("date_part('color', ts)")
    with pytest.raises(PlanError, match="date_trunc\\(TEXT, TEXT\\) does not exist"):
        bind("date_trunc('hour', s)")
    with pytest.raises(PlanError, match="operator - does not take INTERVAL and TIMESTAMP"):
        bind("INTERVAL '1 hour' - ts")
    # sqlglot reads date_trunc(s, ts) as the unit 's': a unit must be written as text
    with pytest.raises(PlanError, match="does not know unit 's'"):
        bind("date_trunc(s, ts)")
