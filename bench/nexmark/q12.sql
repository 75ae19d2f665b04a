-- Nexmark q12: processing-time windows. Bids per bidder per 10 seconds of wall-clock
-- (arrival) time: the table declares its columns without the event time column (and no
-- WATERMARK), so the window is on processing time.
-- kind: processing-time window
CREATE TABLE bid (bidder BIGINT) WITH (connector = 'nexmark', table = 'bid',
                                    events = '10000000');
CREATE TABLE results WITH (connector = 'blackhole');

INSERT INTO results
SELECT bidder, bid_count, window.start AS starttime, window.end AS endtime
FROM (
  SELECT bidder, count(*) AS bid_count, tumble(INTERVAL '10' SECOND) AS window
  FROM bid
  GROUP BY bidder, window
);
