-- Nexmark q0, pass-through: every bid.
SELECT auction, bidder, price, channel, url, dateTime, extra FROM bid;
