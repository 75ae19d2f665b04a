WITH maxes AS (
  SELECT max(price) AS maxprice,
         to_timestamp((floor(epoch_us(date_time) / 10000000) + 1) * 10) AS date_time
  FROM bid GROUP BY 2
)
SELECT B.auction, B.price, B.bidder, B.date_time, B.extra
FROM bid AS B JOIN maxes AS B1 ON B.price = B1.maxprice
WHERE B.date_time BETWEEN B1.date_time - INTERVAL 10 SECOND AND B1.date_time
