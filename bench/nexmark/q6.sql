-- Nexmark q6: average selling price by seller. The average of the closing prices of each
-- seller's last 10 auctions: the winning bids of q4, then a ROWS window per seller.
-- kind: interval join + updating aggregate + OVER window
-- needs: joins, updating aggregates, OVER (ROWS BETWEEN n PRECEDING AND CURRENT ROW)
CREATE TABLE auction WITH (connector = 'nexmark', table = 'auction', events = '10000000',
                           event_time_field = 'date_time');
CREATE TABLE bid WITH (connector = 'nexmark', table = 'bid', events = '10000000',
                       event_time_field = 'date_time');
CREATE TABLE results WITH (connector = 'blackhole');

INSERT INTO results
SELECT Q.seller,
       avg(Q.final) OVER (PARTITION BY Q.seller ORDER BY Q.date_time
                          ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) AS avg_final
FROM (
  SELECT max(B.price) AS final, A.seller, max(B.date_time) AS date_time
  FROM auction AS A
  JOIN bid AS B ON A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
  GROUP BY A.id, A.seller
) AS Q;
