SELECT make_timestamptz((epoch_us(date_time) // 1000000 + 1) * 1000000) AS window_end,
       count(*) AS bids
FROM bid GROUP BY window_end
