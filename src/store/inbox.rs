//! The inbox's writes: agents, tokens, conversation workflow, notes, labels, saved replies,
//! conversation merges. Every change to a conversation is also a timeline entry saying who.

use sqlx::{QueryBuilder, Row};

use super::error::{is_unique_violation, StoreError};
use super::model::*;
use super::{begin_write, now_ms, with_pool, Pools, Store};

/// A change to a conversation's workflow fields; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct ConversationPatch {
    pub status: Option<String>,
    pub snoozed_until: Option<i64>,
    /// `Some(None)` unassigns.
    pub assignee_id: Option<Option<String>>,
    pub priority: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AgentPatch {
    pub name: Option<String>,
    pub role: Option<String>,
    pub active: Option<bool>,
}

/// Inserts a timeline entry made by a person or the hub (no raw event) into a conversation.
macro_rules! insert_entry {
    ($tx:expr, $conv:expr, $kind:expr, $direction:expr, $body:expr, $actor:expr, $outbound:expr, $now:expr) => {{
        let entry_id = sqlx::query(
            "INSERT INTO timeline_entries (raw_event_id, item_index, customer_id, conversation_id, connector_id, channel, kind, direction, occurred_at, body, created_at, actor, outbound_id) \
             VALUES (NULL, 0, $1, $2, $3, $4, $5, $6, $7, $8, $7, $9, $10) RETURNING id",
        )
        .bind(&$conv.customer_id)
        .bind(&$conv.id)
        .bind(&$conv.connector_id)
        .bind(&$conv.channel)
        .bind($kind)
        .bind($direction)
        .bind($now)
        .bind($body.to_string())
        .bind($actor)
        .bind($outbound)
        .fetch_one(&mut *$tx)
        .await?
        .try_get::<i64, _>(0)?;
        let kind: &str = $kind;
        let event = if kind == "message" { "message.created" } else { "conversation.updated" };
        let payload = serde_json::json!({
            "entry_id": entry_id,
            "conversation_id": $conv.id,
            "customer_id": $conv.canonical_customer_id,
            "kind": kind,
            "direction": $direction,
            "actor": $actor,
            "outbound_id": $outbound,
            "body": $body,
        });
        crate::store::events::append_event!($tx, event, Some($conv.id.as_str()), Some($conv.canonical_customer_id.as_str()), payload, $now);
        entry_id
    }};
}
pub(crate) use insert_entry;

/// The fields of a conversation a write needs.
pub(crate) struct ConvCore {
    pub id: String,
    pub customer_id: String,
    pub canonical_customer_id: String,
    pub connector_id: String,
    pub channel: String,
    pub thread_key: String,
    pub status: String,
    pub assignee_id: Option<String>,
    pub priority: String,
    pub snoozed_until: Option<i64>,
    pub merged_into: Option<String>,
    pub last_message_at: i64,
}

macro_rules! load_conv {
    ($tx:expr, $id:expr) => {{
        let r = sqlx::query(
            "SELECT v.id, v.customer_id, c.canonical_id, v.connector_id, v.channel, v.thread_key, v.status, v.assignee_id, v.priority, v.snoozed_until, v.merged_into, v.last_message_at \
             FROM conversations v JOIN customers c ON c.id = v.customer_id WHERE v.id = $1",
        )
        .bind($id)
        .fetch_optional(&mut *$tx)
        .await?;
        match r {
            None => None,
            Some(r) => Some(crate::store::inbox::ConvCore {
                id: r.try_get(0)?,
                customer_id: r.try_get(1)?,
                canonical_customer_id: r.try_get(2)?,
                connector_id: r.try_get(3)?,
                channel: r.try_get(4)?,
                thread_key: r.try_get(5)?,
                status: r.try_get(6)?,
                assignee_id: r.try_get(7)?,
                priority: r.try_get(8)?,
                snoozed_until: r.try_get(9)?,
                merged_into: r.try_get(10)?,
                last_message_at: r.try_get(11)?,
            }),
        }
    }};
}
pub(crate) use load_conv;

fn activity(action: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({ "type": "activity", "action": action });
    if let (Some(m), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    v
}

macro_rules! agent_from_row {
    ($r:expr) => {{
        let r = $r;
        let active: i64 = r.try_get(4)?;
        Agent {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            email: r.try_get(2)?,
            role: r.try_get(3)?,
            active: active != 0,
            created_at: rfc3339(r.try_get(5)?),
        }
    }};
}

impl Store {
    pub async fn create_agent(
        &self,
        name: &str,
        email: &str,
        role: &str,
    ) -> Result<Agent, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let r = with_pool!(self, write, |pool, pg| {
            sqlx::query("INSERT INTO agents (id, name, email, role, active, created_at, updated_at) VALUES ($1, $2, $3, $4, 1, $5, $5)")
                .bind(&id)
                .bind(name)
                .bind(email)
                .bind(role)
                .bind(now)
                .execute(pool)
                .await
                .map(|_| ())
        });
        match r {
            Ok(()) => Ok(Agent {
                id,
                name: name.into(),
                email: email.into(),
                role: role.into(),
                active: true,
                created_at: rfc3339(now),
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::conflict(
                "agent_exists",
                format!("an agent with email {email} exists"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_agent(&self, id: &str) -> Result<Option<Agent>, StoreError> {
        with_pool!(self, read, |pool, pg| {
            let r = sqlx::query(
                "SELECT id, name, email, role, active, created_at FROM agents WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            Ok(match r {
                Some(r) => Some(agent_from_row!(&r)),
                None => None,
            })
        })
    }

    pub async fn list_agents(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Agent>, StoreError> {
        with_pool!(self, read, |pool, pg| {
            let mut qb = QueryBuilder::new(
                "SELECT id, name, email, role, active, created_at FROM agents WHERE 1 = 1",
            );
            if let Some(a) = after {
                qb.push(" AND id > ").push_bind(a);
            }
            qb.push(" ORDER BY id LIMIT ").push_bind(limit);
            let mut out = Vec::new();
            for r in qb.build().fetch_all(pool).await? {
                out.push(agent_from_row!(&r));
            }
            Ok(out)
        })
    }

    pub async fn update_agent(&self, id: &str, p: &AgentPatch) -> Result<Agent, StoreError> {
        with_pool!(self, write, |pool, pg| {
            let r = sqlx::query(
                "UPDATE agents SET name = COALESCE($1, name), role = COALESCE($2, role), active = COALESCE($3, active), updated_at = $4 WHERE id = $5",
            )
            .bind(p.name.as_deref())
            .bind(p.role.as_deref())
            .bind(p.active.map(i64::from))
            .bind(now_ms())
            .bind(id)
            .execute(pool)
            .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::NotFound("agent"));
            }
        });
        self.forget_tokens();
        self.get_agent(id)
            .await?
            .ok_or(StoreError::NotFound("agent"))
    }

    pub async fn create_agent_token(
        &self,
        name: &str,
        role: &str,
        token_hash: &str,
        agent_id: Option<&str>,
    ) -> Result<TokenInfo, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            sqlx::query("INSERT INTO api_tokens (id, name, role, token_hash, created_at, agent_id) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&id)
                .bind(name)
                .bind(role)
                .bind(token_hash)
                .bind(now)
                .bind(agent_id)
                .execute(pool)
                .await?;
        });
        Ok(TokenInfo {
            id,
            name: name.into(),
            role: role.into(),
            agent_id: agent_id.map(str::to_string),
            created_at: rfc3339(now),
            revoked_at: None,
        })
    }

    pub async fn list_tokens(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<TokenInfo>, StoreError> {
        with_pool!(self, read, |pool, pg| {
            let mut qb = QueryBuilder::new("SELECT id, name, role, agent_id, created_at, revoked_at FROM api_tokens WHERE 1 = 1");
            if let Some(a) = after {
                qb.push(" AND id > ").push_bind(a);
            }
            qb.push(" ORDER BY id LIMIT ").push_bind(limit);
            let mut out = Vec::new();
            for r in qb.build().fetch_all(pool).await? {
                let revoked: Option<i64> = r.try_get(5)?;
                out.push(TokenInfo {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    role: r.try_get(2)?,
                    agent_id: r.try_get(3)?,
                    created_at: rfc3339(r.try_get(4)?),
                    revoked_at: revoked.map(rfc3339),
                });
            }
            Ok(out)
        })
    }

    /// Revokes a token; revoking twice is fine.
    pub async fn revoke_token(&self, id: &str) -> Result<(), StoreError> {
        with_pool!(self, write, |pool, pg| {
            let r = sqlx::query(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
            )
            .bind(now_ms())
            .bind(id)
            .execute(pool)
            .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::NotFound("token"));
            }
        });
        self.forget_tokens();
        Ok(())
    }

    /// Applies a workflow change and records one timeline entry per field that changed.
    pub async fn update_conversation(
        &self,
        id: &str,
        p: &ConversationPatch,
        actor: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            let Some(c) = load_conv!(tx, id) else {
                return Err(StoreError::NotFound("conversation"));
            };
            if let Some(m) = &c.merged_into {
                return Err(StoreError::conflict(
                    "conversation_merged",
                    format!("merged into {m}; change that one"),
                ));
            }
            let mut changes: Vec<serde_json::Value> = Vec::new();
            let status = p.status.clone().unwrap_or_else(|| c.status.clone());
            let snoozed_until = if status == "snoozed" {
                p.snoozed_until.or(c.snoozed_until)
            } else {
                None
            };
            if status == "snoozed" && snoozed_until.is_none() {
                return Err(StoreError::invalid(
                    "snoozed_until",
                    "snoozed_until_required",
                    "a snoozed conversation needs snoozed_until",
                ));
            }
            if status != c.status || snoozed_until != c.snoozed_until {
                let mut extra = serde_json::json!({ "from": c.status, "to": status });
                if let Some(t) = snoozed_until {
                    extra["snoozed_until"] = rfc3339(t).into();
                }
                changes.push(activity("status_changed", extra));
            }
            let assignee = match &p.assignee_id {
                None => c.assignee_id.clone(),
                Some(None) => None,
                Some(Some(a)) => {
                    let r = sqlx::query("SELECT active FROM agents WHERE id = $1")
                        .bind(a)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let active: Option<i64> = match r {
                        Some(r) => Some(r.try_get(0)?),
                        None => None,
                    };
                    if active != Some(1) {
                        return Err(StoreError::invalid(
                            "assignee_id",
                            "unknown_agent",
                            format!("no active agent `{a}`"),
                        ));
                    }
                    Some(a.clone())
                }
            };
            if assignee != c.assignee_id {
                changes.push(activity(
                    if assignee.is_some() {
                        "assigned"
                    } else {
                        "unassigned"
                    },
                    serde_json::json!({ "from": c.assignee_id, "to": assignee }),
                ));
            }
            let priority = p.priority.clone().unwrap_or_else(|| c.priority.clone());
            if priority != c.priority {
                changes.push(activity(
                    "priority_changed",
                    serde_json::json!({ "from": c.priority, "to": priority }),
                ));
            }
            if changes.is_empty() {
                return Ok(());
            }
            sqlx::query("UPDATE conversations SET status = $1, snoozed_until = $2, assignee_id = $3, priority = $4, updated_at = $5 WHERE id = $6")
                .bind(&status)
                .bind(snoozed_until)
                .bind(assignee.as_deref())
                .bind(&priority)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            for ch in changes {
                insert_entry!(
                    tx,
                    c,
                    "activity",
                    "internal",
                    ch,
                    actor,
                    None::<String>,
                    now
                );
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn add_label(&self, id: &str, label: &str, actor: &str) -> Result<(), StoreError> {
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            let Some(c) = load_conv!(tx, id) else {
                return Err(StoreError::NotFound("conversation"));
            };
            let r = sqlx::query("INSERT INTO conversation_labels (conversation_id, label, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(id)
                .bind(label)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if r.rows_affected() > 0 {
                insert_entry!(
                    tx,
                    c,
                    "activity",
                    "internal",
                    activity("label_added", serde_json::json!({ "label": label })),
                    actor,
                    None::<String>,
                    now
                );
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn remove_label(&self, id: &str, label: &str, actor: &str) -> Result<(), StoreError> {
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            let Some(c) = load_conv!(tx, id) else {
                return Err(StoreError::NotFound("conversation"));
            };
            let r = sqlx::query(
                "DELETE FROM conversation_labels WHERE conversation_id = $1 AND label = $2",
            )
            .bind(id)
            .bind(label)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::NotFound("label"));
            }
            insert_entry!(
                tx,
                c,
                "activity",
                "internal",
                activity("label_removed", serde_json::json!({ "label": label })),
                actor,
                None::<String>,
                now
            );
            tx.commit().await?;
        });
        Ok(())
    }

    /// A private note: on the timeline, never sent to the customer. Returns the entry id.
    pub async fn add_note(&self, id: &str, text: &str, actor: &str) -> Result<i64, StoreError> {
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            let Some(c) = load_conv!(tx, id) else {
                return Err(StoreError::NotFound("conversation"));
            };
            let entry = insert_entry!(
                tx,
                c,
                "note",
                "internal",
                serde_json::json!({ "type": "note", "text": text }),
                actor,
                None::<String>,
                now
            );
            tx.commit().await?;
            Ok(entry)
        })
    }

    /// Merges `other` into `id` (same customer): its entries move, its labels join, and it
    /// points to the survivor so later messages on its thread land in the survivor.
    pub async fn merge_conversations(
        &self,
        id: &str,
        other: &str,
        actor: &str,
    ) -> Result<(), StoreError> {
        if id == other {
            return Err(StoreError::invalid(
                "other",
                "same_conversation",
                "cannot merge a conversation into itself",
            ));
        }
        let now = now_ms();
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            let Some(a) = load_conv!(tx, id) else {
                return Err(StoreError::NotFound("conversation"));
            };
            let Some(b) = load_conv!(tx, other) else {
                return Err(StoreError::invalid(
                    "other",
                    "unknown_conversation",
                    format!("no conversation `{other}`"),
                ));
            };
            if a.merged_into.is_some() || b.merged_into.is_some() {
                return Err(StoreError::conflict(
                    "conversation_merged",
                    "one of the conversations is already merged",
                ));
            }
            if a.canonical_customer_id != b.canonical_customer_id {
                return Err(StoreError::invalid(
                    "other",
                    "different_customers",
                    "conversations of different customers cannot be merged",
                ));
            }
            sqlx::query(
                "UPDATE timeline_entries SET conversation_id = $1 WHERE conversation_id = $2",
            )
            .bind(id)
            .bind(other)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO conversation_labels (conversation_id, label, created_at) SELECT $1, label, created_at FROM conversation_labels WHERE conversation_id = $2 ON CONFLICT DO NOTHING")
                .bind(id)
                .bind(other)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE conversations SET merged_into = $1, status = 'resolved', snoozed_until = NULL, updated_at = $2 WHERE id = $3").bind(id).bind(now).bind(other).execute(&mut *tx).await?;
            sqlx::query(
                "UPDATE conversations SET last_message_at = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(a.last_message_at.max(b.last_message_at))
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            // Conversations merged into `other` earlier follow it.
            sqlx::query("UPDATE conversations SET merged_into = $1 WHERE merged_into = $2")
                .bind(id)
                .bind(other)
                .execute(&mut *tx)
                .await?;
            insert_entry!(
                tx,
                a,
                "activity",
                "internal",
                activity(
                    "conversation_merged",
                    serde_json::json!({ "merged": other })
                ),
                actor,
                None::<String>,
                now
            );
            tx.commit().await?;
        });
        Ok(())
    }

    /// Reopens snoozed conversations whose time has come; returns their ids.
    pub async fn reopen_due_snoozes(&self, now: i64) -> Result<Vec<String>, StoreError> {
        with_pool!(self, write, |pool, pg| {
            let mut tx = begin_write!(pool, pg)?;
            let ids: Vec<String> = sqlx::query("SELECT id FROM conversations WHERE status = 'snoozed' AND snoozed_until <= $1 ORDER BY snoozed_until LIMIT 500")
                .bind(now)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<Result<_, _>>()?;
            for id in &ids {
                let Some(c) = load_conv!(tx, id.as_str()) else {
                    continue;
                };
                sqlx::query("UPDATE conversations SET status = 'open', snoozed_until = NULL, updated_at = $1 WHERE id = $2").bind(now).bind(id).execute(&mut *tx).await?;
                insert_entry!(
                    tx,
                    c,
                    "activity",
                    "internal",
                    activity(
                        "status_changed",
                        serde_json::json!({ "from": "snoozed", "to": "open", "reason": "snooze ended" })
                    ),
                    "system",
                    None::<String>,
                    now
                );
            }
            tx.commit().await?;
            Ok(ids)
        })
    }

    pub async fn create_saved_reply(
        &self,
        name: &str,
        text: &str,
        actor: &str,
    ) -> Result<SavedReply, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let r = with_pool!(self, write, |pool, pg| {
            sqlx::query("INSERT INTO saved_replies (id, name, text, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)")
                .bind(&id)
                .bind(name)
                .bind(text)
                .bind(actor)
                .bind(now)
                .execute(pool)
                .await
                .map(|_| ())
        });
        match r {
            Ok(()) => Ok(SavedReply {
                id,
                name: name.into(),
                text: text.into(),
                created_by: actor.into(),
                updated_at: rfc3339(now),
            }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::conflict(
                "saved_reply_exists",
                format!("a saved reply named `{name}` exists"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_saved_replies(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SavedReply>, StoreError> {
        with_pool!(self, read, |pool, pg| {
            let mut qb = QueryBuilder::new(
                "SELECT id, name, text, created_by, updated_at FROM saved_replies WHERE 1 = 1",
            );
            if let Some(a) = after {
                qb.push(" AND name > ").push_bind(a);
            }
            qb.push(" ORDER BY name LIMIT ").push_bind(limit);
            let mut out = Vec::new();
            for r in qb.build().fetch_all(pool).await? {
                out.push(SavedReply {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    text: r.try_get(2)?,
                    created_by: r.try_get(3)?,
                    updated_at: rfc3339(r.try_get(4)?),
                });
            }
            Ok(out)
        })
    }

    pub async fn update_saved_reply(
        &self,
        id: &str,
        name: Option<&str>,
        text: Option<&str>,
    ) -> Result<SavedReply, StoreError> {
        let r = with_pool!(self, write, |pool, pg| {
            sqlx::query("UPDATE saved_replies SET name = COALESCE($1, name), text = COALESCE($2, text), updated_at = $3 WHERE id = $4")
                .bind(name)
                .bind(text)
                .bind(now_ms())
                .bind(id)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        });
        match r {
            Ok(0) => return Err(StoreError::NotFound("saved reply")),
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::conflict(
                    "saved_reply_exists",
                    "a saved reply with that name exists",
                ))
            }
            Err(e) => return Err(e.into()),
        }
        with_pool!(self, read, |pool, pg| {
            let r = sqlx::query(
                "SELECT id, name, text, created_by, updated_at FROM saved_replies WHERE id = $1",
            )
            .bind(id)
            .fetch_one(pool)
            .await?;
            Ok(SavedReply {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                text: r.try_get(2)?,
                created_by: r.try_get(3)?,
                updated_at: rfc3339(r.try_get(4)?),
            })
        })
    }

    pub async fn delete_saved_reply(&self, id: &str) -> Result<(), StoreError> {
        with_pool!(self, write, |pool, pg| {
            let r = sqlx::query("DELETE FROM saved_replies WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::NotFound("saved reply"));
            }
        });
        Ok(())
    }
}
