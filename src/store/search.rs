//! Full-text search over the whole history: message and note text, customer names and
//! identity values (migration 0003: FTS5 tables on SQLite, GIN-indexed tsvectors on
//! PostgreSQL, both kept current by the database on every write).
//!
//! The user's query never reaches either engine's query syntax. It is parsed here into a small
//! grammar (words, "quoted phrases", `OR` between terms, `-word` or `NOT word` to exclude; a
//! bare `AND` is ignored, every term must match anyway) and rendered as an FTS5 expression of
//! quoted strings (SQLite, one bound parameter) or as a combination of `phraseto_tsquery` calls
//! over bound parameters (PostgreSQL). Neither can fail to parse.
//! Matches are ranked (on SQLite FTS5's bm25 without its document-length term, `quickrank` in
//! fts_rank.rs; `ts_rank` on PostgreSQL; higher is better) and
//! highlighted; snippets are HTML-escaped with the matches wrapped in `<mark>…</mark>`.

use serde::Serialize;
use sqlx::Row;

use super::model::rfc3339;
use super::{with_pool, Pools, Store};

/// The FTS5 indexes of migration 0003 (SQLite).
pub const FTS_TABLES: [&str; 3] = ["search_entries", "search_names", "search_identities"];

/// At most this many words/phrases of a query are used; the rest is ignored.
const MAX_PHRASES: usize = 32;

/// Marks the engines put around a match in a snippet, turned into `<mark>` after escaping.
const OPEN: char = '\u{2}';
const CLOSE: char = '\u{3}';

/// A user query, parsed. Matching rows contain every clause (a clause is satisfied by any of
/// its phrases) and none of the excluded phrases. A phrase is a run of words that must appear
/// in that order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchTerms {
    all: Vec<Vec<String>>,
    none: Vec<String>,
}

enum Token {
    Or,
    Term { negated: bool, text: String },
}

impl SearchTerms {
    /// Parses any text; never fails. Terms that hold no letter or digit are dropped (neither
    /// engine would find a word in them).
    pub fn parse(q: &str) -> SearchTerms {
        let chars: Vec<char> = q.chars().collect();
        let mut tokens = Vec::new();
        let mut not_pending = false;
        let mut i = 0;
        while i < chars.len() {
            if chars[i].is_whitespace() {
                i += 1;
                continue;
            }
            let mut negated = false;
            if chars[i] == '-' && chars.get(i + 1).is_some_and(|c| !c.is_whitespace()) {
                negated = true;
                i += 1;
            }
            let text: String = if chars[i] == '"' {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == '"')
                    .map_or(chars.len(), |p| start + p);
                i = end + 1;
                chars[start..end].iter().collect()
            } else {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '"' {
                    i += 1;
                }
                chars[start..i].iter().collect()
            };
            match text.as_str() {
                "OR" if !negated => tokens.push(Token::Or),
                // Terms must all match anyway.
                "AND" if !negated => {}
                "NOT" if !negated => not_pending = true,
                _ => {
                    tokens.push(Token::Term {
                        negated: negated || not_pending,
                        text,
                    });
                    not_pending = false;
                }
            }
        }

        let mut terms = SearchTerms::default();
        let mut count = 0;
        let mut or_pending = false;
        for t in tokens {
            match t {
                Token::Or => or_pending = true,
                Token::Term { negated, text } => {
                    let Some(phrase) = clean_phrase(&text) else {
                        continue;
                    };
                    if count == MAX_PHRASES {
                        break;
                    }
                    count += 1;
                    if negated {
                        terms.none.push(phrase);
                    } else if or_pending && !terms.all.is_empty() {
                        terms.all.last_mut().expect("not empty").push(phrase);
                    } else {
                        terms.all.push(vec![phrase]);
                    }
                    or_pending = false;
                }
            }
        }
        terms
    }

    /// Nothing to look for: no term that must match (exclusions alone match nothing here).
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The FTS5 MATCH expression: every phrase a double-quoted string, so no user character is
    /// ever read as FTS5 syntax.
    fn fts5(&self) -> String {
        let quoted = fts5_string;
        let clauses: Vec<String> = self
            .all
            .iter()
            .map(|alts| {
                if alts.len() == 1 {
                    quoted(&alts[0])
                } else {
                    let a: Vec<String> = alts.iter().map(|p| quoted(p)).collect();
                    format!("({})", a.join(" OR "))
                }
            })
            .collect();
        let mut expr = clauses.join(" AND ");
        for n in &self.none {
            expr = format!("({expr}) NOT {}", quoted(n));
        }
        expr
    }

    /// A PostgreSQL tsquery expression over bound parameters `$first`, `$first+1`, …, and the
    /// values to bind to them, in order.
    fn tsquery(&self, first: usize) -> (String, Vec<String>) {
        let mut binds: Vec<String> = Vec::new();
        let mut phrase = |p: &str| {
            binds.push(p.to_string());
            format!("phraseto_tsquery('simple', ${})", first + binds.len() - 1)
        };
        let mut clauses = Vec::new();
        for alts in &self.all {
            let a: Vec<String> = alts.iter().map(|p| phrase(p)).collect();
            clauses.push(format!("({})", a.join(" || ")));
        }
        let mut expr = clauses.join(" && ");
        for n in &self.none {
            expr = format!("{expr} && !!{}", phrase(n));
        }
        (format!("({expr})"), binds)
    }
}

/// One phrase as an FTS5 string: double-quoted, so no user character is read as syntax.
fn fts5_string(p: &str) -> String {
    format!("\"{}\"", p.replace('"', "\"\""))
}

/// The words of one term, joined by single spaces; `None` when no word has a letter or digit.
fn clean_phrase(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| w.chars().filter(|c| !c.is_control() && *c != '"').collect())
        .filter(|w: &String| w.chars().any(char::is_alphanumeric))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    /// Conversation status; entries outside conversations do not match it.
    pub status: Option<String>,
    pub connector_id: Option<String>,
    /// A canonical customer id: that customer's entries (every alias) and the customer itself.
    pub customer_id: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

impl SearchFilter {
    /// Customers have no status and no single connector: a filter on either leaves only
    /// timeline entries.
    fn includes_customers(&self) -> bool {
        self.status.is_none() && self.connector_id.is_none()
    }
}

/// One search result; `rank` is higher for better matches and comparable within one response.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SearchHit {
    Message {
        entry_id: i64,
        conversation_id: Option<String>,
        /// Canonical (merges followed).
        customer_id: String,
        connector_id: String,
        /// Timeline entry kind: `message` or `note`.
        kind: String,
        occurred_at: String,
        snippet: String,
        rank: f64,
    },
    Customer {
        /// Canonical (merges followed).
        customer_id: String,
        display_name: Option<String>,
        snippet: String,
        rank: f64,
    },
}

// Shared parameters: $1 status, $2 connector, $3 canonical customer, $4 limit, $5 offset;
// SQLite $6 is the MATCH expression, PostgreSQL binds the phrases from $6 on.

/// A word (or phrase) with more matching entries than this is common. A query with no
/// common word is ranked over every match, however old: that is at most this many entries
/// per word. A query with a common word comes back newest first: ranking hundreds of
/// thousands of matches costs time in proportion to the whole history (FTS5's bm25 counts
/// every match of every word for its IDF even when only a few rows are ranked), and a
/// word that is in every other message says nothing about which one is best.
pub const RANKED_MAX: i64 = 2_000;
/// Newest-first results reach back this many entries at most (offset + limit).
pub const NEWEST_MAX: i64 = 10_000;
/// A filter may drop most of the newest matches, so a newest-first search with a filter
/// looks at this many of them.
const NEWEST_FILTERED: i64 = 20_000;
/// Customer names and identities ranked per query, each: the most recently added ones (a
/// last name alone matches thousands of customers, all with the same score). One full page
/// (the largest `limit`) of each; ranking more costs every search that names somebody.
pub const CUSTOMERS_MAX: i64 = 200;

/// How one search runs.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Relevance over every match (no common word), or newest first.
    ranked: bool,
    /// A status, connector or customer filter: entries are joined to their conversation and
    /// customer before the page is cut.
    filtered: bool,
    /// Customers are searched too (no status or connector filter).
    customers: bool,
    /// Newest-first: entries read at most.
    newest: i64,
    /// Names and identities ranked at most, each.
    customer_cap: i64,
}

impl Plan {
    fn of(f: &SearchFilter, ranked: bool) -> Plan {
        let filtered = f.status.is_some() || f.connector_id.is_some() || f.customer_id.is_some();
        let end = f.offset.saturating_add(f.limit).clamp(0, NEWEST_MAX);
        Plan {
            ranked,
            filtered,
            customers: f.includes_customers(),
            newest: if filtered { NEWEST_FILTERED } else { end },
            // A customer filter keeps that customer's own names and identities, which a
            // cap over everybody's could leave out.
            customer_cap: if f.customer_id.is_some() {
                NEWEST_FILTERED
            } else {
                CUSTOMERS_MAX
            },
        }
    }
}

/// The order of results: best first; ties (every entry of a newest-first search):
/// customers, then the most recently stored entries (the entry id, so nothing but the
/// search index is read before the page is cut). Customer hits carry their id before the
/// page is cut, entries get theirs after.
const ORDER: &str = "score DESC, type, entry_id DESC, customer_id";
/// [`ORDER`] on the `page` alias.
const ORDER_P: &str = "p.score DESC, p.type, p.entry_id DESC, p.customer_id";

/// For each of the query's words (FTS5 strings, bound from `$1`), whether it is in more than
/// [`RANKED_MAX`] entries; each count stops there. Words, not phrases: counting a phrase
/// of two common words that is itself rare (`"order wrap"`) reads both words' whole
/// position lists, and ranking it would read them again for bm25's IDF. One column per
/// word, so that each answer can be remembered ([`CommonWords`]).
fn sqlite_common_sql(words: usize) -> String {
    let probes: Vec<String> = (1..=words)
        .map(|i| {
            format!(
                "(SELECT count(*) FROM (SELECT 1 FROM search_entries WHERE search_entries MATCH ${i} \
                  LIMIT {})) > {RANKED_MAX}",
                RANKED_MAX + 1
            )
        })
        .collect();
    if probes.is_empty() {
        return String::new();
    }
    format!("SELECT {}", probes.join(", "))
}

/// Which words are common, as the last probe found, for [`CommonWords::TTL`]: most searches
/// repeat words searched a moment ago, and the probe is a statement of its own (on
/// PostgreSQL a look at the planner's statistics, or a GIN count). An answer a minute old is
/// still right for the choice it makes (ranked or newest first): a word crosses
/// [`RANKED_MAX`] entries slowly, and either order returns the same matches.
#[derive(Debug, Default)]
pub(crate) struct CommonWords {
    inner: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, bool)>>,
}

impl CommonWords {
    const TTL: std::time::Duration = std::time::Duration::from_secs(60);
    /// Words remembered at most; a full map drops its expired answers, then everything.
    const MAX: usize = 20_000;

    fn get(&self, word: &str) -> Option<bool> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.get(word)
            .filter(|(at, _)| at.elapsed() < Self::TTL)
            .map(|(_, common)| *common)
    }

    fn put(&self, word: &str, common: bool) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::MAX && !map.contains_key(word) {
            map.retain(|_, (at, _)| at.elapsed() < Self::TTL);
            if map.len() >= Self::MAX {
                map.clear();
            }
        }
        map.insert(word.to_owned(), (std::time::Instant::now(), common));
    }

    /// Forgets every answer (tests that change what is common).
    pub(crate) fn clear(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The words of a query still to be probed: `None` when a remembered answer already
/// decides (a common word: newest first), else the unknown words (none: ranked).
fn unknown_words<'a>(cache: &CommonWords, words: Vec<&'a str>) -> Option<Vec<&'a str>> {
    let mut unknown = Vec::new();
    for w in words {
        match cache.get(w) {
            Some(true) => return None,
            Some(false) => {}
            None => unknown.push(w),
        }
    }
    Some(unknown)
}

fn sqlite_sql(plan: Plan) -> String {
    // Ranked (quickrank: bm25 without its document-length term, fts_rank.rs): every match
    // (no common word, so at most RANKED_MAX per clause). Newest first:
    // FTS5 walks the rowids backwards and stops; no bm25, whose IDF would count them all.
    let source = if plan.ranked {
        format!(
            "(SELECT rowid AS rid, quickrank(search_entries) AS score FROM search_entries \
              WHERE search_entries MATCH $6 LIMIT {}) s",
            RANKED_MAX * MAX_PHRASES as i64
        )
    } else {
        format!(
            "(SELECT rowid AS rid, 0.0 AS score FROM search_entries \
              WHERE search_entries MATCH $6 ORDER BY rowid DESC LIMIT {}) s",
            plan.newest
        )
    };
    let messages = if plan.filtered {
        format!(
            "SELECT 'message' AS type, t.id AS entry_id, k.id AS customer_id, s.score AS score, \
                    NULL AS src, NULL AS src_id \
             FROM {source} \
             JOIN timeline_entries t ON t.id = s.rid \
             JOIN customers c ON c.id = t.customer_id JOIN customers k ON k.id = c.canonical_id \
             LEFT JOIN conversations v ON v.id = t.conversation_id \
             WHERE ($1 IS NULL OR v.status = $1) \
               AND ($2 IS NULL OR t.connector_id = $2) AND ($3 IS NULL OR k.id = $3)"
        )
    } else {
        format!(
            "SELECT 'message' AS type, s.rid AS entry_id, NULL AS customer_id, s.score AS score, \
                    NULL AS src, NULL AS src_id \
             FROM {source} WHERE $1 IS NULL AND $2 IS NULL AND $3 IS NULL"
        )
    };
    let customers = if plan.customers {
        let ccap = plan.customer_cap;
        // The best-matching name or identity of each canonical customer.
        format!(
            " UNION ALL \
             SELECT 'customer', NULL, cust_id, score, src, src_id FROM ( \
               SELECT k.id AS cust_id, h.score AS score, h.src AS src, h.src_id AS src_id, \
                      ROW_NUMBER() OVER (PARTITION BY k.id ORDER BY h.score DESC, h.src, h.src_id) AS n \
               FROM ( \
                 SELECT 'name' AS src, rid AS src_id, rec, score FROM ( \
                   SELECT rowid AS rid, customer_id AS rec, quickrank(search_names) AS score \
                   FROM search_names WHERE search_names MATCH $6 ORDER BY rowid DESC LIMIT {ccap}) \
                 UNION ALL \
                 SELECT 'identity', si.rid, i.customer_id, si.score FROM ( \
                   SELECT rowid AS rid, quickrank(search_identities) AS score \
                   FROM search_identities WHERE search_identities MATCH $6 \
                   ORDER BY rowid DESC LIMIT {ccap}) si \
                 JOIN identities i ON i.id = si.rid \
               ) h JOIN customers c ON c.id = h.rec JOIN customers k ON k.id = c.canonical_id \
               WHERE ($3 IS NULL OR k.id = $3) \
             ) WHERE n = 1"
        )
    } else {
        String::new()
    };
    // Customers of entries and snippets only for the page's rows. Snippets come from one
    // scan of each index over the page's rowid range: a lookup per row (MATCH and rowid =)
    // would set up a whole FTS5 query per row, ~75 µs each for a common word. `+rowid`
    // keeps the IN list from being used as such a lookup.
    let marks = |table: &str, src: &str, id: &str, func: &str| {
        format!(
            "{table}_marks AS MATERIALIZED (SELECT rowid AS rid, {func} AS snip FROM {table} \
               WHERE {table} MATCH $6 \
                 AND rowid >= (SELECT min({id}) FROM page WHERE {src}) \
                 AND rowid <= (SELECT max({id}) FROM page WHERE {src}) \
                 AND +rowid IN (SELECT {id} FROM page WHERE {src}))"
        )
    };
    format!(
        "WITH hits AS ({messages}{customers}), \
         page AS MATERIALIZED (SELECT * FROM hits ORDER BY {ORDER} LIMIT $4 OFFSET $5), \
         {}, {}, {} \
         SELECT p.type, p.entry_id, coalesce(p.customer_id, mc.canonical_id), p.score, \
                t.conversation_id, t.connector_id, t.kind, t.occurred_at, k.display_name, \
                coalesce(se.snip, sn.snip, si.snip) \
         FROM page p LEFT JOIN timeline_entries t ON t.id = p.entry_id \
         LEFT JOIN customers mc ON mc.id = t.customer_id \
         LEFT JOIN customers k ON k.id = p.customer_id \
         LEFT JOIN search_entries_marks se ON p.type = 'message' AND se.rid = p.entry_id \
         LEFT JOIN search_names_marks sn ON p.src = 'name' AND sn.rid = p.src_id \
         LEFT JOIN search_identities_marks si ON p.src = 'identity' AND si.rid = p.src_id \
         ORDER BY {ORDER_P}",
        marks(
            "search_entries",
            "type = 'message'",
            "entry_id",
            "snippet(search_entries, 0, char(2), char(3), '…', 24)"
        ),
        marks(
            "search_names",
            "src = 'name'",
            "src_id",
            "highlight(search_names, 0, char(2), char(3))"
        ),
        marks(
            "search_identities",
            "src = 'identity'",
            "src_id",
            "highlight(search_identities, 0, char(2), char(3))"
        ),
    )
}

/// The identities index expression of migration 0003 (must match it to use the index).
const PG_IDENTITY_TSV: &str =
    "(to_tsvector('simple', i.value) || to_tsvector('simple', translate(i.value, '@', ' ')))";

const PG_MESSAGE_HEADLINE: &str = "'StartSel=' || chr(2) || ', StopSel=' || chr(3) || \
     ', MaxWords=30, MinWords=12, ShortWord=2, MaxFragments=2, FragmentDelimiter=\" … \"'";
const PG_CUSTOMER_HEADLINE: &str =
    "'HighlightAll=true, StartSel=' || chr(2) || ', StopSel=' || chr(3)";

/// [`sqlite_common_sql`] for PostgreSQL: one word bound per `$i`. A GIN index answers even
/// a counting probe by building a bitmap of every match and visiting heap rows: 10-16 ms for
/// a word in 31,000 of 1M entries. So the planner's statistics go first: `ANALYZE` keeps the
/// most common lexemes of `search_tsv` with their frequencies (`pg_stats.most_common_elems`),
/// and a word listed there in more than [`RANKED_MAX`] rows is common without reading the
/// index (under 1 ms). Unlisted words, or no statistics yet, are counted as before (the
/// count is a lazily evaluated subquery, run only when the statistics said no). One column
/// per word, as on SQLite.
fn pg_common_sql(words: usize) -> String {
    let probes: Vec<String> = (1..=words)
        .map(|i| {
            format!(
                "(EXISTS (SELECT 1 FROM known \
                   WHERE lexeme = ANY (tsvector_to_array(to_tsvector('simple', ${i})))) \
                  OR (SELECT count(*) FROM (SELECT 1 FROM timeline_entries \
                  WHERE search_tsv @@ phraseto_tsquery('simple', ${i}) LIMIT {}) x) > {RANKED_MAX})",
                RANKED_MAX + 1
            )
        })
        .collect();
    if probes.is_empty() {
        return String::new();
    }
    // Read once per statement (a CTE used more than once is materialized).
    format!(
        "WITH known AS (SELECT m.lexeme FROM pg_stats s, \
           unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS m(lexeme, freq) \
         WHERE s.schemaname = current_schema() AND s.tablename = 'timeline_entries' \
           AND s.attname = 'search_tsv' \
           AND m.freq * greatest((SELECT reltuples FROM pg_class \
                                  WHERE oid = 'timeline_entries'::regclass), 0) > {RANKED_MAX}) \
         SELECT {}",
        probes.join(", ")
    )
}

fn pg_sql(q: &str, plan: Plan) -> String {
    let source = if plan.ranked {
        format!(
            "(SELECT id, ts_rank(search_tsv, {q}, 1)::float8 AS score \
              FROM timeline_entries WHERE search_tsv @@ {q} LIMIT {}) s",
            RANKED_MAX * MAX_PHRASES as i64
        )
    } else {
        format!(
            "(SELECT id, 0.0::float8 AS score FROM timeline_entries \
              WHERE search_tsv @@ {q} ORDER BY id DESC LIMIT {}) s",
            plan.newest
        )
    };
    let messages = if plan.filtered {
        format!(
            "SELECT 'message'::text AS type, t.id AS entry_id, k.id AS customer_id, s.score AS score, \
                    NULL::text AS doc \
             FROM {source} \
             JOIN timeline_entries t ON t.id = s.id \
             JOIN customers c ON c.id = t.customer_id JOIN customers k ON k.id = c.canonical_id \
             LEFT JOIN conversations v ON v.id = t.conversation_id \
             WHERE ($1::text IS NULL OR v.status = $1) \
               AND ($2::text IS NULL OR t.connector_id = $2) AND ($3::text IS NULL OR k.id = $3)"
        )
    } else {
        format!(
            "SELECT 'message'::text AS type, s.id AS entry_id, NULL::text AS customer_id, \
                    s.score AS score, NULL::text AS doc \
             FROM {source} WHERE $1::text IS NULL AND $2::text IS NULL AND $3::text IS NULL"
        )
    };
    let customers = if plan.customers {
        let ccap = plan.customer_cap;
        format!(
            " UNION ALL \
             SELECT 'customer', NULL, cust_id, score, doc FROM ( \
               SELECT k.id AS cust_id, h.score AS score, h.doc AS doc, \
                      ROW_NUMBER() OVER (PARTITION BY k.id ORDER BY h.score DESC, h.doc) AS n \
               FROM ( \
                 SELECT rec, doc, ts_rank(to_tsvector('simple', doc), {q}, 1)::float8 AS score FROM ( \
                   SELECT nm.id AS rec, coalesce(nm.display_name, '') AS doc FROM customers nm \
                   WHERE to_tsvector('simple', coalesce(nm.display_name, '')) @@ {q} \
                   ORDER BY nm.created_at DESC, nm.id DESC LIMIT {ccap}) n \
                 UNION ALL \
                 SELECT rec, doc, ts_rank(to_tsvector('simple', doc) || \
                        to_tsvector('simple', translate(doc, '@', ' ')), {q}, 1)::float8 FROM ( \
                   SELECT i.customer_id AS rec, i.value AS doc FROM identities i \
                   WHERE {PG_IDENTITY_TSV} @@ {q} ORDER BY i.id DESC LIMIT {ccap}) d \
               ) h JOIN customers c ON c.id = h.rec JOIN customers k ON k.id = c.canonical_id \
               WHERE ($3::text IS NULL OR k.id = $3) \
             ) x WHERE n = 1"
        )
    } else {
        String::new()
    };
    format!(
        "WITH hits AS ({messages}{customers}), \
         page AS (SELECT * FROM hits ORDER BY {ORDER} LIMIT $4 OFFSET $5) \
         SELECT p.type, p.entry_id, coalesce(p.customer_id, mc.canonical_id), p.score, \
                t.conversation_id, t.connector_id, t.kind, t.occurred_at, k.display_name, \
           CASE WHEN p.type = 'message' \
                THEN ts_headline('simple', coalesce((t.body::jsonb) ->> 'text', ''), {q}, {PG_MESSAGE_HEADLINE}) \
                ELSE ts_headline('simple', p.doc, {q}, {PG_CUSTOMER_HEADLINE}) END \
         FROM page p LEFT JOIN timeline_entries t ON t.id = p.entry_id \
         LEFT JOIN customers mc ON mc.id = t.customer_id \
         LEFT JOIN customers k ON k.id = p.customer_id \
         ORDER BY {ORDER_P}"
    )
}

impl SearchTerms {
    /// Every phrase of the query, excluded ones too (FTS5 counts those for bm25 as well).
    fn phrases(&self) -> impl Iterator<Item = &String> {
        self.all.iter().flatten().chain(&self.none)
    }

    /// The words whose counts decide between ranked and newest first, each once, at most
    /// [`MAX_PHRASES`]: every word of every phrase, excluded ones too. `split` cuts a phrase
    /// into the words the engine indexes.
    fn probe_words<'a, I: Iterator<Item = &'a str>>(
        &'a self,
        split: fn(&'a str) -> I,
    ) -> Vec<&'a str> {
        let mut words: Vec<&str> = Vec::new();
        for w in self.phrases().flat_map(|p| split(p.as_str())) {
            if words.len() == MAX_PHRASES {
                break;
            }
            if !w.is_empty() && !words.contains(&w) {
                words.push(w);
            }
        }
        words
    }
}

/// FTS5's `unicode61` tokens: runs of letters and digits.
fn fts5_words(p: &str) -> std::str::Split<'_, fn(char) -> bool> {
    p.split((|c: char| !c.is_alphanumeric()) as fn(char) -> bool)
}

/// PostgreSQL's words of a phrase, as `phraseto_tsquery` gets them: whitespace apart (its
/// parser keeps an email or a URL whole).
fn pg_words(p: &str) -> std::str::SplitWhitespace<'_> {
    p.split_whitespace()
}

impl Store {
    /// Runs a per-word probe (`sql`, one bool column per word) and remembers each answer;
    /// true when any word is common. No words: false, without a statement.
    async fn probe<'e, E, DB>(
        &self,
        exec: E,
        sql: &str,
        words: &[&str],
        bind: fn(&str) -> String,
    ) -> anyhow::Result<bool>
    where
        E: sqlx::Executor<'e, Database = DB>,
        DB: sqlx::Database,
        for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
        String: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        bool: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
        usize: sqlx::ColumnIndex<DB::Row>,
    {
        if words.is_empty() {
            return Ok(false);
        }
        let mut q = sqlx::query(sql);
        for w in words {
            q = q.bind(bind(w));
        }
        let row = q.fetch_one(exec).await?;
        let mut any = false;
        for (i, w) in words.iter().enumerate() {
            let common: bool = row.try_get(i)?;
            self.common_words.put(w, common);
            any |= common;
        }
        Ok(any)
    }

    /// SQLite: how many segments the three search indexes hold in all (0 on PostgreSQL, whose
    /// GIN indexes need no merging). FTS5 writes a segment per transaction and merges them
    /// only in groups, so an index written in many small transactions keeps a dozen or more,
    /// and every word of every search is looked up in each of them.
    pub async fn search_segments(&self) -> anyhow::Result<i64> {
        let mut n = 0;
        for table in 0..FTS_TABLES.len() {
            n += self.search_index_segments(table).await?.len() as i64;
        }
        Ok(n)
    }

    /// SQLite: the sizes of one search index's segments (`table` indexes [`FTS_TABLES`]),
    /// largest first, in rows of `<table>_idx`: FTS5 keeps one per leaf page on which a term
    /// starts, so pages holding only the middle of a long position list are not counted.
    /// Empty on PostgreSQL.
    pub async fn search_index_segments(&self, table: usize) -> anyhow::Result<Vec<i64>> {
        let Pools::Sqlite { read, .. } = &self.pools else {
            return Ok(Vec::new());
        };
        let Some(t) = FTS_TABLES.get(table) else {
            return Ok(Vec::new());
        };
        Ok(sqlx::query_scalar(&format!(
            "SELECT count(*) AS pages FROM {t}_idx GROUP BY segid ORDER BY pages DESC"
        ))
        .fetch_all(read)
        .await?)
    }

    /// SQLite: one bounded step of merging a search index into a single segment (FTS5's
    /// `merge` command with a negative page count: every level at once), in its own short
    /// write transaction (`table` indexes [`FTS_TABLES`]); returns whether it did any work.
    /// PostgreSQL: nothing to do.
    pub async fn merge_search_step(&self, table: usize, pages: i64) -> anyhow::Result<bool> {
        let Pools::Sqlite { write, .. } = &self.pools else {
            return Ok(false);
        };
        let Some(t) = FTS_TABLES.get(table) else {
            return Ok(false);
        };
        let mut conn = write.acquire().await?;
        let (before,): (i64,) = sqlx::query_as("SELECT total_changes()")
            .fetch_one(&mut *conn)
            .await?;
        sqlx::query(&format!("INSERT INTO {t} ({t}, rank) VALUES ('merge', $1)"))
            .bind(-pages.max(16))
            .execute(&mut *conn)
            .await?;
        let (after,): (i64,) = sqlx::query_as("SELECT total_changes()")
            .fetch_one(&mut *conn)
            .await?;
        // The command itself counts as one change; a step that merged wrote many more.
        Ok(after - before > 1)
    }

    /// Merges every search index into one segment, step by step, until no step has work
    /// left (at most `max_steps` steps in all); returns the steps taken. What the idle-time
    /// maintenance does ([`crate::maintain`]), in one go.
    pub async fn merge_search_indexes(
        &self,
        pages: i64,
        max_steps: usize,
    ) -> anyhow::Result<usize> {
        let mut steps = 0;
        for table in 0..FTS_TABLES.len() {
            while steps < max_steps && self.merge_search_step(table, pages).await? {
                steps += 1;
            }
        }
        Ok(steps)
    }

    /// A number that changes whenever events arrive or the timeline grows (the newest raw
    /// event and timeline entry ids): the idle-time maintenance waits for it to stand still.
    pub async fn write_mark(&self) -> anyhow::Result<i64> {
        with_pool!(self, read, |pool, pg| {
            let (m,): (i64,) = sqlx::query_as(
                "SELECT coalesce((SELECT max(id) FROM raw_events), 0) \
                      + coalesce((SELECT max(id) FROM timeline_entries), 0)",
            )
            .fetch_one(pool)
            .await?;
            Ok(m)
        })
    }

    /// Forgets which words the probes found common (see [`CommonWords`]).
    pub fn forget_common_words(&self) {
        self.common_words.clear();
    }

    /// One page of results: ranked best first when no word of the query is common (see
    /// [`RANKED_MAX`]), newest first otherwise (every entry's rank is then 0); ties:
    /// customers, then newer entries. Pages are by offset: relevance has no stable keyset.
    pub async fn search(
        &self,
        terms: &SearchTerms,
        f: &SearchFilter,
    ) -> anyhow::Result<Vec<SearchHit>> {
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        with_pool!(self, read, |pool, pg| {
            let rows = if pg {
                // The page's statement depends on the words for its plan (a common word is
                // found fastest by walking the newest entries, a rare one through the GIN
                // index), which a generic plan cannot know; PostgreSQL switches a prepared
                // statement to one after five runs unless told not to. The probe's plan is
                // the same for every word, and planning it anew each time (it reads the
                // pg_stats view) cost ~5 ms: it keeps its cached plan, so it runs first. JIT
                // compiling a statement that runs for milliseconds costs more than it saves.
                let mut tx = pool.begin().await?;
                sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await?;
                let common = match unknown_words(&self.common_words, terms.probe_words(pg_words)) {
                    None => true,
                    Some(words) => {
                        self.probe(&mut *tx, &pg_common_sql(words.len()), &words, |w| {
                            w.to_owned()
                        })
                        .await?
                    }
                };
                sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
                    .execute(&mut *tx)
                    .await?;
                let (q, binds) = terms.tsquery(6);
                let sql = pg_sql(&q, Plan::of(f, !common));
                let mut query = sqlx::query(&sql)
                    .bind(f.status.as_deref())
                    .bind(f.connector_id.as_deref())
                    .bind(f.customer_id.as_deref())
                    .bind(f.limit)
                    .bind(f.offset);
                for p in &binds {
                    query = query.bind(p.as_str());
                }
                let rows = query.fetch_all(&mut *tx).await?;
                tx.commit().await?;
                rows
            } else {
                let common = match unknown_words(&self.common_words, terms.probe_words(fts5_words))
                {
                    None => true,
                    Some(words) => {
                        self.probe(pool, &sqlite_common_sql(words.len()), &words, |w| {
                            fts5_string(w)
                        })
                        .await?
                    }
                };
                let sql = sqlite_sql(Plan::of(f, !common));
                sqlx::query(&sql)
                    .bind(f.status.as_deref())
                    .bind(f.connector_id.as_deref())
                    .bind(f.customer_id.as_deref())
                    .bind(f.limit)
                    .bind(f.offset)
                    .bind(terms.fts5())
                    .fetch_all(pool)
                    .await?
            };
            let mut out = Vec::new();
            for r in rows {
                let kind: String = r.try_get(0)?;
                let customer_id: String = r.try_get(2)?;
                let rank: f64 = r.try_get(3)?;
                let snippet = html_snippet(r.try_get::<Option<String>, _>(9)?.as_deref());
                out.push(if kind == "message" {
                    SearchHit::Message {
                        entry_id: r.try_get(1)?,
                        conversation_id: r.try_get(4)?,
                        customer_id,
                        connector_id: r.try_get(5)?,
                        kind: r.try_get(6)?,
                        occurred_at: rfc3339(r.try_get(7)?),
                        snippet,
                        rank,
                    }
                } else {
                    SearchHit::Customer {
                        customer_id,
                        display_name: r.try_get(8)?,
                        snippet,
                        rank,
                    }
                });
            }
            Ok(out)
        })
    }
}

/// HTML-escapes an engine's snippet and turns its match marks into balanced `<mark>` tags.
fn html_snippet(raw: Option<&str>) -> String {
    let raw = raw.unwrap_or("");
    let mut out = String::with_capacity(raw.len() + 16);
    let mut open = false;
    for c in raw.chars() {
        match c {
            OPEN if !open => {
                out.push_str("<mark>");
                open = true;
            }
            CLOSE if open => {
                out.push_str("</mark>");
                open = false;
            }
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    if open {
        out.push_str("</mark>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> (String, String) {
        let t = SearchTerms::parse(q);
        (t.fts5(), t.tsquery(6).0)
    }

    #[test]
    fn words_phrases_or_and_exclusions() {
        let t = SearchTerms::parse(r#"refund "blue shoes" card OR paypal -spam"#);
        assert_eq!(
            t.fts5(),
            r#"("refund" AND "blue shoes" AND ("card" OR "paypal")) NOT "spam""#
        );
        let (q, binds) = t.tsquery(6);
        assert_eq!(
            q,
            "((phraseto_tsquery('simple', $6)) && (phraseto_tsquery('simple', $7)) && \
             (phraseto_tsquery('simple', $8) || phraseto_tsquery('simple', $9)) && \
             !!phraseto_tsquery('simple', $10))"
        );
        assert_eq!(binds, ["refund", "blue shoes", "card", "paypal", "spam"]);
    }

    #[test]
    fn hostile_input_stays_inside_quoted_strings() {
        assert_eq!(parse(r#""foo"#).0, r#""foo""#);
        assert!(!SearchTerms::parse("x AND OR ( ) * ^ : -").is_empty());
        assert!(SearchTerms::parse("AND OR (").is_empty());
        assert_eq!(
            parse("a AND b NOT c and").0,
            r#"("a" AND "b" AND "and") NOT "c""#
        );
        assert!(SearchTerms::parse("( ) * ^ : - OR").is_empty());
        assert!(SearchTerms::parse("-only -negative").is_empty());
        assert_eq!(parse(r#"a"b'c"#).0, r#""a" AND "b'c""#);
        assert_eq!(
            parse("x NEAR(y z) col:w").0,
            r#""x" AND "NEAR(y" AND "z)" AND "col:w""#
        );
        assert!(SearchTerms::parse("\u{0} \u{7}").is_empty());
    }

    #[test]
    fn long_queries_are_capped() {
        let q = (0..100)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(SearchTerms::parse(&q).tsquery(6).1.len(), MAX_PHRASES);
    }

    #[test]
    fn the_probe_counts_each_indexed_word_once() {
        let t = SearchTerms::parse(r#""order wrap" ada.lovelace@example.com OR order -wrap"#);
        assert_eq!(
            t.probe_words(fts5_words),
            ["order", "wrap", "ada", "lovelace", "example", "com"]
        );
        assert_eq!(
            t.probe_words(pg_words),
            ["order", "wrap", "ada.lovelace@example.com"]
        );
        let many = (0..100)
            .map(|i| format!("w{i}-x{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let t = SearchTerms::parse(&many);
        assert_eq!(t.probe_words(fts5_words).len(), MAX_PHRASES);
        assert_eq!(t.probe_words(fts5_words)[..3], ["w0", "x0", "w1"]);
        assert!(SearchTerms::default().probe_words(fts5_words).is_empty());
        assert_eq!(sqlite_common_sql(0), "");
        assert_eq!(pg_common_sql(0), "");
    }

    #[test]
    fn snippets_are_escaped_with_balanced_marks() {
        assert_eq!(
            html_snippet(Some("a <b> & \u{2}x\u{3} \u{3}\u{2}y")),
            "a &lt;b&gt; &amp; <mark>x</mark> <mark>y</mark>"
        );
        assert_eq!(html_snippet(None), "");
    }
}
