-- Nexmark q2: selection. The bids on a few auctions (one auction id in 123).
-- kind: stateless
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '10000000',
                       event_time_field = 'date_time');
CREATE TABLE results WITH (connector = 'blackhole');

INSERT INTO results
SELECT auction, price FROM bid WHERE auction % 123 = 0;
