-- Nexmark q3: local item suggestion. Auctions of category 10 by sellers from OR, ID or CA:
-- an updating (non-windowed) join of auctions with people.
-- kind: updating join
-- needs: updating joins
CREATE TABLE auction WITH (connector = 'nexmark', table = 'auction', events = '10000000',
                           event_time_field = 'date_time');
CREATE TABLE person WITH (connector = 'nexmark', table = 'person', events = '10000000',
                          event_time_field = 'date_time');
CREATE TABLE results WITH (connector = 'blackhole');

INSERT INTO results
SELECT P.name, P.city, P.state, A.id
FROM auction AS A
JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA');
