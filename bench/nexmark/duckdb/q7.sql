WITH maxes AS (
  SELECT max(price) AS maxprice, (epoch_us(date_time) // 10000000 + 1) * 10000000 AS end_us
  FROM bid GROUP BY end_us
)
SELECT B.auction, B.price, B.bidder, B.date_time, B.extra
FROM bid AS B JOIN maxes AS B1 ON B.price = B1.maxprice
WHERE epoch_us(B.date_time) BETWEEN B1.end_us - 10000000 AND B1.end_us
