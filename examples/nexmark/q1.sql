-- Nexmark q1, currency conversion: every bid's price in euros (a DOUBLE product, as the job's).
SELECT auction, bidder, CAST(0.908 AS DOUBLE) * price AS price, dateTime, extra FROM bid;
