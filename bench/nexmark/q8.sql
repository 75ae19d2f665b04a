-- Nexmark q8: monitor new users. People who opened an account and created an auction in
-- the same 10-second tumbling window: two windowed aggregates joined on key and window.
-- kind: windowed aggregate + window join
-- needs: window joins
CREATE TABLE person WITH (connector = 'nexmark', table = 'person', events = '10000000',
                          event_time_field = 'date_time');
CREATE TABLE auction WITH (connector = 'nexmark', table = 'auction', events = '10000000',
                           event_time_field = 'date_time');
CREATE TABLE results WITH (connector = 'blackhole');

INSERT INTO results
SELECT P.id, P.name, P.starttime
FROM (
  SELECT id, name, window_start AS starttime, window_end AS endtime
  FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY id, name, window_start, window_end
) AS P
JOIN (
  SELECT seller, window_start AS starttime, window_end AS endtime
  FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY seller, window_start, window_end
) AS A ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime;
