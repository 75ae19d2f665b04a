-- Nexmark q1: currency conversion. Every bid with its price in euros.
-- kind: stateless
-- latency: date_time
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '10000000',
                       event_time_field = 'date_time');
CREATE TABLE results WITH (connector = 'blackhole');

INSERT INTO results
SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid;
