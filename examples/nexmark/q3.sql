-- Nexmark q3, local item suggestion: category-10 auctions of sellers in OR, ID or CA.
SELECT P.name, P.city, P.state, A.id
FROM auction AS A
JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND P.state IN ('OR', 'ID', 'CA');
