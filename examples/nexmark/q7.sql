-- Nexmark q7, highest bid: per tumbling 10 s window, the highest price and the bids at it.
WITH windowed AS (
  SELECT B.*, B.dateTime - B.dateTime % 10000 AS start FROM bid AS B
),
highest AS (
  SELECT start, max(price) AS price FROM windowed GROUP BY start
)
SELECT W.start, W.start + 10000 AS "end", W.price,
  list({'auction': W.auction, 'bidder': W.bidder, 'dateTime': W.dateTime} ORDER BY W.auction, W.bidder, W.dateTime) AS bids
FROM windowed AS W JOIN highest AS H USING (start, price)
GROUP BY W.start, W.price;
