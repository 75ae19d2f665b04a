-- Nexmark q11: user sessions. Bids per bidder per session of activity (a session ends after
-- 10 seconds without a bid from that bidder).
-- kind: session window
-- latency: endtime
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '10000000',
                       event_time_field = 'date_time');
CREATE TABLE results WITH (connector = 'blackhole');

INSERT INTO results
SELECT bidder, bid_count, window.start AS starttime, window.end AS endtime
FROM (
  SELECT bidder, count(*) AS bid_count, session(INTERVAL '10' SECOND) AS window
  FROM bid
  GROUP BY bidder, window
);
