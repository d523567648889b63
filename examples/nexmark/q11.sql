-- Nexmark q11, user sessions: bids per bidder in session windows with a 10 s gap. A bid starts a
-- new session when the bidder's previous bid is more than 10 s before it (bids exactly 10 s apart
-- share a session: the windows [t, t + gap) touch, and touching sessions merge, as in Flink).
WITH marked AS (
  SELECT bidder, dateTime,
    CASE WHEN dateTime - lag(dateTime) OVER (PARTITION BY bidder ORDER BY dateTime) <= 10000 THEN 0 ELSE 1 END AS starts
  FROM bid
),
numbered AS (
  SELECT bidder, dateTime, sum(starts) OVER (PARTITION BY bidder ORDER BY dateTime ROWS UNBOUNDED PRECEDING) AS session
  FROM marked
)
SELECT bidder, min(dateTime) AS start, max(dateTime) + 10000 AS "end", count(*) AS count
FROM numbered GROUP BY bidder, session;
