-- SQLite only (a covering index for the inbox list, see migrations/sqlite/0016). PostgreSQL
-- answers an index-only scan only from pages the visibility map marks all-visible, which a
-- conversation's frequent updates keep clearing; its list reads stay on
-- conversations_status_recent.
SELECT 1;
