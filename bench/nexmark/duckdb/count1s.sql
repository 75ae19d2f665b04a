SELECT to_timestamp((floor(epoch_us(date_time) / 1000000) + 1)) AS window_end,
       count(*) AS bids
FROM bid GROUP BY 1
