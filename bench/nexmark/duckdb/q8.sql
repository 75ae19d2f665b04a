WITH P AS (
  SELECT id, name, epoch_us(date_time) // 10000000 AS w FROM person GROUP BY id, name, w
), A AS (
  SELECT seller, epoch_us(date_time) // 10000000 AS w FROM auction GROUP BY seller, w
)
SELECT P.id, P.name, make_timestamptz(P.w * 10000000) AS starttime
FROM P JOIN A ON P.id = A.seller AND P.w = A.w
