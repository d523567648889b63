-- Nexmark q0, pass-through: every bid, as it is in the topic (with its "type" field).
SELECT 'bid' AS type, auction, bidder, price, channel, url, dateTime, extra FROM bid;
