-- Nexmark q0: pass-through. Every bid, unchanged: the cost of reading and writing events.
-- kind: stateless
-- latency: date_time
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '10000000',
                       event_time_field = 'date_time');
CREATE TABLE results WITH (connector = 'blackhole');

INSERT INTO results
SELECT auction, bidder, price, date_time, extra FROM bid;
