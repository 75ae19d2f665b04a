SELECT Q.category, avg(Q.final) AS avg_final
FROM (
  SELECT max(B.price) AS final, A.category
  FROM auction AS A
  JOIN bid AS B ON A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
  GROUP BY A.id, A.category
) AS Q
GROUP BY Q.category
