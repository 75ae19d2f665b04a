-- Not a Nexmark query: the number of bids per 1-second tumbling window, the smallest
-- windowed query, used for end-to-end latency (a result is due when its window ends).
-- kind: windowed aggregate
-- latency: window_end
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '10000000',
                       event_time_field = 'date_time');
CREATE TABLE results WITH (connector = 'blackhole');

INSERT INTO results
SELECT window_end, count(*) AS bids
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND))
GROUP BY window_start, window_end;
