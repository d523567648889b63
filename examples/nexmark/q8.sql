-- Nexmark q8, monitor new users: persons who registered and opened an auction in the same
-- tumbling 10 s window, one row per person and window.
SELECT DISTINCT P.id, P.name, P.dateTime - P.dateTime % 10000 AS start
FROM person AS P JOIN auction AS A
  ON A.seller = P.id AND A.dateTime - A.dateTime % 10000 = P.dateTime - P.dateTime % 10000;
