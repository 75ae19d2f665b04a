WITH P AS (
  SELECT id, name, to_timestamp(floor(epoch_us(date_time) / 10000000) * 10) AS starttime
  FROM person GROUP BY ALL
), A AS (
  SELECT seller, to_timestamp(floor(epoch_us(date_time) / 10000000) * 10) AS starttime
  FROM auction GROUP BY ALL
)
SELECT P.id, P.name, P.starttime
FROM P JOIN A ON P.id = A.seller AND P.starttime = A.starttime
