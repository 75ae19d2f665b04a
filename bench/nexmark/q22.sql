-- Nexmark q22: get URL directories. Bids with the first three directories of their url
-- (Flink's SPLIT_INDEX(url, '/', 3) is split_part(url, '/', 4): 1-based, counting the
-- empty field of '//').
-- kind: stateless
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '10000000',
                       event_time_field = 'date_time');
CREATE TABLE results WITH (connector = 'blackhole');

INSERT INTO results
SELECT auction, bidder, price, channel,
       split_part(url, '/', 4) AS dir1, split_part(url, '/', 5) AS dir2,
       split_part(url, '/', 6) AS dir3
FROM bid;
