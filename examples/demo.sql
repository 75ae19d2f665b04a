-- The demo of `make run`: Nexmark bids generated live at 200k events/s (for 10 seconds),
-- counted per channel in 2-second tumbling windows of event time. Each window's rows are
-- printed once, when the watermark passes the window's end.
CREATE TABLE bids WITH (
  connector = 'nexmark',
  table = 'bid',
  events = '2200000',
  event_rate = '200000',
  pace = 'true',
  base_time = 'now'
);

CREATE VIEW channel_bids AS
SELECT CASE WHEN channel IN ('Google', 'Facebook', 'Baidu', 'Apple') THEN channel
            ELSE 'other' END AS channel,
       bidder, price, date_time
FROM bids;

SELECT window_start, window_end, channel,
       count(*) AS bids, count(DISTINCT bidder) AS bidders,
       round(avg(price) / 100.0, 2) AS avg_price, max(price) / 100 AS max_price
FROM TABLE(TUMBLE(TABLE channel_bids, DESCRIPTOR(date_time), INTERVAL '2' SECOND))
GROUP BY window_start, window_end, channel;
