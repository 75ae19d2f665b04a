SELECT Q.seller,
       avg(Q.final) OVER (PARTITION BY Q.seller ORDER BY Q.date_time
                          ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) AS avg_final
FROM (
  SELECT max(B.price) AS final, A.seller, max(B.date_time) AS date_time
  FROM auction AS A
  JOIN bid AS B ON A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
  GROUP BY A.id, A.seller
) AS Q
