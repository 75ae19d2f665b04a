-- Nexmark q20: expand bid with auction. Every bid on an auction of category 10, with the
-- auction's fields: an updating join of bids with auctions.
-- kind: updating join
-- needs: updating joins
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '10000000',
                       event_time_field = 'date_time');
CREATE TABLE auction WITH (connector = 'nexmark', table = 'auction', events = '10000000',
                           event_time_field = 'date_time');
CREATE TABLE results WITH (connector = 'blackhole');

INSERT INTO results
SELECT B.auction, B.bidder, B.price, B.channel, B.url, B.date_time, B.extra,
       A.item_name, A.description, A.initial_bid, A.reserve, A.date_time AS auction_time,
       A.expires, A.seller, A.category, A.extra AS auction_extra
FROM bid AS B
JOIN auction AS A ON B.auction = A.id
WHERE A.category = 10;
