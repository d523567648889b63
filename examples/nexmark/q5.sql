-- Nexmark q5, hot items: per hopping window (10 s sliding by 2 s), the auctions with the most bids.
-- Each bid is in the 5 windows whose start is a multiple of 2 s in (dateTime - 10 s, dateTime].
WITH windowed AS (
  SELECT B.auction, W.start
  FROM bid AS B,
    LATERAL (SELECT B.dateTime - B.dateTime % 2000 - 2000 * k AS start FROM range(5) AS t(k)) AS W
),
counts AS (
  SELECT start, auction, count(*) AS num FROM windowed GROUP BY start, auction
),
maxima AS (
  SELECT start, max(num) AS num FROM counts GROUP BY start
)
SELECT C.start, C.start + 10000 AS "end", list(C.auction ORDER BY C.auction) AS auctions, M.num AS count
FROM counts AS C JOIN maxima AS M USING (start, num)
GROUP BY C.start, M.num;
