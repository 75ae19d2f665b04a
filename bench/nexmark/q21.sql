-- Nexmark q21: add channel id. Bids with a channel id taken from the channel name, or else
-- from the url's channel_id parameter (regular expressions).
-- kind: stateless
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '10000000',
                       event_time_field = 'date_time');
CREATE TABLE results WITH (connector = 'blackhole');

INSERT INTO results
SELECT auction, bidder, price, channel,
       CASE
         WHEN lower(channel) = 'apple' THEN '0'
         WHEN lower(channel) = 'google' THEN '1'
         WHEN lower(channel) = 'facebook' THEN '2'
         WHEN lower(channel) = 'baidu' THEN '3'
         ELSE (regexp_match(url, '(&|^)channel_id=([^&]*)'))[2]
       END AS channel_id
FROM bid
WHERE (regexp_match(url, '(&|^)channel_id=([^&]*)'))[2] IS NOT NULL
   OR lower(channel) IN ('apple', 'google', 'facebook', 'baidu');
