-- Nexmark q4: average closing price per category. The winning bid of each auction (the
-- highest bid while it was open), averaged per category: a join on auction id restricted to
-- the auction's lifetime, then two levels of updating aggregates.
-- kind: interval join + updating aggregate
-- needs: joins, updating aggregates
CREATE TABLE auction WITH (connector = 'nexmark', table = 'auction', events = '10000000',
                           event_time_field = 'date_time');
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '10000000',
                       event_time_field = 'date_time');
CREATE TABLE results WITH (connector = 'blackhole');

INSERT INTO results
SELECT Q.category, avg(Q.final) AS avg_final
FROM (
  SELECT max(B.price) AS final, A.category
  FROM auction AS A
  JOIN bid AS B ON A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
  GROUP BY A.id, A.category
) AS Q
GROUP BY Q.category;
