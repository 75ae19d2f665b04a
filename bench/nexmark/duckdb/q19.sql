SELECT auction, bidder, price, channel, url, date_time, extra, rank_number
FROM (
  SELECT *, row_number() OVER (PARTITION BY auction ORDER BY price DESC, date_time)
            AS rank_number
  FROM bid
)
WHERE rank_number <= 10
