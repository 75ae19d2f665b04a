-- The demo of `make run`: Nexmark bids generated at 200k events/s of event time,
-- filtered and projected, printed as they arrive.
CREATE TABLE bids WITH (
  connector = 'nexmark',
  table = 'bid',
  events = '2000000',
  event_rate = '200000',
  pace = 'true',
  base_time = 'now'
);

-- Nexmark q2-style: the bids on a few auctions, with the price in euros.
SELECT auction, bidder, price * 0.908 AS price_eur, date_time
FROM bids
WHERE auction % 1123 = 0 AND price > 10000000;
