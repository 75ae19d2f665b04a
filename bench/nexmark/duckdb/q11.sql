WITH ordered AS (
  SELECT bidder, date_time,
         CASE WHEN date_time - lag(date_time) OVER (PARTITION BY bidder ORDER BY date_time)
                   < INTERVAL 10 SECOND THEN 0 ELSE 1 END AS starts
  FROM bid
), numbered AS (
  SELECT bidder, date_time,
         sum(starts) OVER (PARTITION BY bidder ORDER BY date_time
                           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_id
  FROM ordered
)
SELECT bidder, count(*) AS bid_count, min(date_time) AS starttime,
       max(date_time) + INTERVAL 10 SECOND AS endtime
FROM numbered GROUP BY bidder, session_id
