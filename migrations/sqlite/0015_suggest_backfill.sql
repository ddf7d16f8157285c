-- Customers the merge suggester has never looked at (created before migration 11 gave it
-- its queue): queue each canonical customer once, oldest first, so the suggester scores the
-- history too, a batch at a time in the background. On a new database this queues nothing.
INSERT INTO suggest_dirty (customer_id, since)
SELECT c.id, c.created_at FROM customers c
WHERE c.id = c.canonical_id
  AND NOT EXISTS (SELECT 1 FROM suggest_features f WHERE f.customer_id = c.id)
ON CONFLICT (customer_id) DO NOTHING;
