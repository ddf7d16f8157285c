-- Email-style threading: other keys a conversation is known by (Message-IDs from
-- References/In-Reply-To, the Message-IDs of our own sent replies, a customer+subject key).
-- An event whose refs name a conversation here joins it. `last_at` is the latest event time
-- that used the ref, for refs that only match within a window (subjects).
CREATE TABLE conversation_refs (
    connector_id    TEXT   NOT NULL,
    ref             TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    last_at         INTEGER NOT NULL,
    PRIMARY KEY (connector_id, ref)
);
CREATE INDEX conversation_refs_conversation ON conversation_refs (conversation_id);
