-- Nexmark q19: auction top-10 price. The 10 highest bids of each auction, updated as bids
-- arrive (an updating top-N). Equal prices are ordered by bid time, so the ranks are
-- deterministic (and comparable with a batch engine's).
-- kind: updating top-N
-- needs: updating top-N (ROW_NUMBER over a non-windowed partition)
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '10000000',
                       event_time_field = 'date_time');
CREATE TABLE results WITH (connector = 'blackhole');

INSERT INTO results
SELECT auction, bidder, price, channel, url, date_time, extra, rank_number
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC, date_time)
            AS rank_number
  FROM bid
)
WHERE rank_number <= 10;
