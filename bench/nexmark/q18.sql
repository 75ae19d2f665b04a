-- Nexmark q18: find last bid. The latest bid of each bidder on each auction: a
-- deduplication by ROW_NUMBER over the whole stream (an updating top-1).
-- kind: updating top-N
-- needs: updating top-N (ROW_NUMBER over a non-windowed partition)
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '10000000',
                       event_time_field = 'date_time');
CREATE TABLE results WITH (connector = 'blackhole');

INSERT INTO results
SELECT auction, bidder, price, channel, url, date_time, extra
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC) AS rank_number
  FROM bid
)
WHERE rank_number <= 1;
