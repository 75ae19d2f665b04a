"""``SET updating_flush = 'off'`` (or 'none'): a duration setting reads it as "no value",
which every updating operator took for a number and the planner failed with an internal
TypeError (at parallelism 1 and, in the two-phase local stage's hold, > 1). It is refused in
one line naming what is accepted."""

from __future__ import annotations

import pytest

from caudal.errors import PlanError
from caudal.job import compile_sql

QUERIES = ["SELECT auction, count(*) AS c FROM bid GROUP BY auction",
           "SELECT DISTINCT auction FROM bid",
           "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price "
           "DESC) AS rn FROM bid) WHERE rn <= 2",
           "SELECT auction, avg(price) OVER (PARTITION BY auction ORDER BY date_time ROWS "
           "BETWEEN 2 PRECEDING AND CURRENT ROW) AS a FROM bid"]


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("value", ["off", "none"])
def test_updating_flush_off_is_refused_in_one_line(query, value, parallelism):
    script = (f"SET updating_flush = '{value}';\nCREATE TABLE bid WITH (connector = "
              f"'nexmark', table = 'bid', events = '10');\n{query};")
    with pytest.raises(PlanError) as e:
        compile_sql(script, parallelism)
    assert "updating_flush" in str(e.value) and "'0'" in str(e.value)


def test_updating_flush_zero_and_durations_still_plan():
    for value in ("0", "250ms", "1 second"):
        compile_sql(f"SET updating_flush = '{value}';\nCREATE TABLE bid WITH (connector = "
                    f"'nexmark', table = 'bid', events = '10');\nSELECT auction, count(*) "
                    f"FROM bid GROUP BY auction;", 2)
