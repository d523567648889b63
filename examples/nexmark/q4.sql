-- Nexmark q4, average price per category: per category, the mean winning price of its auctions
-- that had a winner, rounded down to a whole cent. An auction's winning bid is its highest bid at
-- or above the reserve placed while it was open: auction.dateTime <= bid.dateTime < auction.expires.
WITH winners AS (
  SELECT A.id, A.category, max(B.price) AS price
  FROM auction AS A JOIN bid AS B
    ON B.auction = A.id AND B.dateTime >= A.dateTime AND B.dateTime < A.expires AND B.price >= A.reserve
  GROUP BY A.id, A.category
)
SELECT category, CAST(sum(price) // count(*) AS BIGINT) AS avg
FROM winners GROUP BY category;
