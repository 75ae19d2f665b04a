WITH windowed AS (
  -- each bid is in the 5 hopping windows starting at (floor(t / 2 s) - k) * 2 s, k = 0..4
  SELECT auction, (epoch_us(date_time) // 2000000 - k) * 2000000 AS start_us
  FROM bid, range(0, 5) AS ks(k)
),
counts AS (
  SELECT auction, count(*) AS num, start_us FROM windowed GROUP BY auction, start_us
),
maxes AS (
  SELECT max(num) AS maxn, start_us FROM counts GROUP BY start_us
)
SELECT c.auction, c.num, make_timestamptz(c.start_us) AS starttime,
       make_timestamptz(c.start_us + 10000000) AS endtime
FROM counts AS c JOIN maxes AS m ON c.start_us = m.start_us AND c.num >= m.maxn
