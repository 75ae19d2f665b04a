WITH windowed AS (
  SELECT auction, w.starttime, w.starttime + INTERVAL 10 SECOND AS endtime
  FROM bid,
       (SELECT unnest(range(0, 5)) AS k) AS ks,
       LATERAL (SELECT to_timestamp((floor(epoch_us(date_time) / 2000000) - ks.k) * 2)
                       AS starttime) AS w
),
counts AS (
  SELECT auction, count(*) AS num, starttime, endtime FROM windowed
  GROUP BY auction, starttime, endtime
),
maxes AS (
  SELECT max(num) AS maxn, starttime, endtime FROM counts GROUP BY starttime, endtime
)
SELECT c.auction, c.num, c.starttime, c.endtime
FROM counts AS c JOIN maxes AS m
  ON c.starttime = m.starttime AND c.endtime = m.endtime AND c.num >= m.maxn
