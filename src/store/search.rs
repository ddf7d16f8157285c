//! Full-text search over the whole history: message and note text, customer names and
//! identity values (migration 0003: FTS5 tables on SQLite, GIN-indexed tsvectors on
//! PostgreSQL, both kept current by the database on every write).
//!
//! The user's query never reaches either engine's query syntax. It is parsed here into a small
//! grammar (words, "quoted phrases", `OR` between terms, `-word` or `NOT word` to exclude; a
//! bare `AND` is ignored, every term must match anyway) and rendered as an FTS5 expression of
//! quoted strings (SQLite, one bound parameter) or as a combination of `phraseto_tsquery` calls
//! over bound parameters (PostgreSQL). Neither can fail to parse.
//! Matches are ranked (FTS5 bm25 on SQLite, `ts_rank` on PostgreSQL; higher is better) and
//! highlighted; snippets are HTML-escaped with the matches wrapped in `<mark>…</mark>`.

use serde::Serialize;
use sqlx::Row;

use super::model::rfc3339;
use super::{with_pool, Pools, Store};

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
        fn quoted(p: &str) -> String {
            format!("\"{}\"", p.replace('"', "\"\""))
        }
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

/// Matches ranked per query: the newest ones. Ranking every match of a common word costs
/// time in proportion to the whole history (450k hits for "order" in the 1M-message bench);
/// both engines find the newest matches cheaply (FTS5 walks rowids backwards, PostgreSQL
/// sorts ids without reading tsvectors), and a rare word in an old message is still found.
const CANDIDATES: i64 = 2_000;
/// With a filter many candidates may be filtered out, so more are ranked.
const CANDIDATES_FILTERED: i64 = 20_000;

fn sqlite_messages(cap: i64) -> String {
    format!(
        "SELECT 'message' AS type, t.id AS entry_id, k.id AS customer_id, s.score AS score, \
                t.occurred_at AS occurred_at, NULL AS src, NULL AS src_id \
         FROM (SELECT rowid AS rid, -bm25(search_entries) AS score FROM search_entries \
               WHERE search_entries MATCH $6 ORDER BY rowid DESC LIMIT {cap}) s \
         JOIN timeline_entries t ON t.id = s.rid \
         JOIN customers c ON c.id = t.customer_id JOIN customers k ON k.id = c.canonical_id \
         LEFT JOIN conversations v ON v.id = t.conversation_id \
         WHERE ($1 IS NULL OR v.status = $1) \
           AND ($2 IS NULL OR t.connector_id = $2) AND ($3 IS NULL OR k.id = $3)"
    )
}

/// The best-matching name or identity of each canonical customer.
const SQLITE_CUSTOMERS: &str = "\
SELECT 'customer', NULL, cust_id, score, NULL, src, src_id FROM ( \
  SELECT k.id AS cust_id, h.score AS score, h.src AS src, h.src_id AS src_id, \
         ROW_NUMBER() OVER (PARTITION BY k.id ORDER BY h.score DESC, h.src, h.src_id) AS n \
  FROM ( \
    SELECT 'name' AS src, search_names.rowid AS src_id, search_names.customer_id AS rec, \
           -bm25(search_names) AS score \
    FROM search_names WHERE search_names MATCH $6 \
    UNION ALL \
    SELECT 'identity', search_identities.rowid, i.customer_id, -bm25(search_identities) \
    FROM search_identities JOIN identities i ON i.id = search_identities.rowid \
    WHERE search_identities MATCH $6 \
  ) h JOIN customers c ON c.id = h.rec JOIN customers k ON k.id = c.canonical_id \
  WHERE ($3 IS NULL OR k.id = $3) \
) WHERE n = 1";

/// Snippets only for the page's rows.
const SQLITE_PAGE: &str = "\
, page AS (SELECT * FROM hits ORDER BY score DESC, type, occurred_at DESC, entry_id DESC, customer_id \
           LIMIT $4 OFFSET $5) \
SELECT p.type, p.entry_id, p.customer_id, p.score, t.conversation_id, t.connector_id, t.kind, \
       t.occurred_at, k.display_name, \
  CASE WHEN p.type = 'message' THEN \
         (SELECT snippet(search_entries, 0, char(2), char(3), '…', 24) FROM search_entries \
          WHERE search_entries MATCH $6 AND search_entries.rowid = p.entry_id) \
       WHEN p.src = 'name' THEN \
         (SELECT highlight(search_names, 0, char(2), char(3)) FROM search_names \
          WHERE search_names MATCH $6 AND search_names.rowid = p.src_id) \
       ELSE \
         (SELECT highlight(search_identities, 0, char(2), char(3)) FROM search_identities \
          WHERE search_identities MATCH $6 AND search_identities.rowid = p.src_id) \
  END \
FROM page p LEFT JOIN timeline_entries t ON t.id = p.entry_id LEFT JOIN customers k ON k.id = p.customer_id \
ORDER BY p.score DESC, p.type, p.occurred_at DESC, p.entry_id DESC, p.customer_id";

/// The identities index expression of migration 0003 (must match it to use the index).
const PG_IDENTITY_TSV: &str =
    "(to_tsvector('simple', i.value) || to_tsvector('simple', translate(i.value, '@', ' ')))";

const PG_MESSAGE_HEADLINE: &str = "'StartSel=' || chr(2) || ', StopSel=' || chr(3) || \
     ', MaxWords=30, MinWords=12, ShortWord=2, MaxFragments=2, FragmentDelimiter=\" … \"'";
const PG_CUSTOMER_HEADLINE: &str =
    "'HighlightAll=true, StartSel=' || chr(2) || ', StopSel=' || chr(3)";

fn pg_sql(q: &str, customers: bool, cap: i64) -> String {
    let messages = format!(
        "SELECT 'message'::text AS type, t.id AS entry_id, k.id AS customer_id, \
                ts_rank(t.search_tsv, {q}, 1)::float8 AS score, t.occurred_at AS occurred_at, \
                NULL::text AS doc \
         FROM (SELECT id FROM timeline_entries WHERE search_tsv @@ {q} ORDER BY id DESC LIMIT {cap}) s \
         JOIN timeline_entries t ON t.id = s.id \
         JOIN customers c ON c.id = t.customer_id JOIN customers k ON k.id = c.canonical_id \
         LEFT JOIN conversations v ON v.id = t.conversation_id \
         WHERE ($1::text IS NULL OR v.status = $1) \
           AND ($2::text IS NULL OR t.connector_id = $2) AND ($3::text IS NULL OR k.id = $3)"
    );
    let customers = if customers {
        format!(
            " UNION ALL \
             SELECT 'customer', NULL, cust_id, score, NULL, doc FROM ( \
               SELECT k.id AS cust_id, h.score AS score, h.doc AS doc, \
                      ROW_NUMBER() OVER (PARTITION BY k.id ORDER BY h.score DESC, h.doc) AS n \
               FROM ( \
                 SELECT nm.id AS rec, nm.display_name AS doc, \
                        ts_rank(to_tsvector('simple', coalesce(nm.display_name, '')), {q}, 1)::float8 AS score \
                 FROM customers nm WHERE to_tsvector('simple', coalesce(nm.display_name, '')) @@ {q} \
                 UNION ALL \
                 SELECT i.customer_id, i.value, ts_rank({PG_IDENTITY_TSV}, {q}, 1)::float8 \
                 FROM identities i WHERE {PG_IDENTITY_TSV} @@ {q} \
               ) h JOIN customers c ON c.id = h.rec JOIN customers k ON k.id = c.canonical_id \
               WHERE ($3::text IS NULL OR k.id = $3) \
             ) x WHERE n = 1"
        )
    } else {
        String::new()
    };
    format!(
        "WITH hits AS ({messages}{customers}), \
         page AS (SELECT * FROM hits ORDER BY score DESC, type, occurred_at DESC, entry_id DESC, customer_id \
                  LIMIT $4 OFFSET $5) \
         SELECT p.type, p.entry_id, p.customer_id, p.score, t.conversation_id, t.connector_id, t.kind, \
                t.occurred_at, k.display_name, \
           CASE WHEN p.type = 'message' \
                THEN ts_headline('simple', coalesce((t.body::jsonb) ->> 'text', ''), {q}, {PG_MESSAGE_HEADLINE}) \
                ELSE ts_headline('simple', p.doc, {q}, {PG_CUSTOMER_HEADLINE}) END \
         FROM page p LEFT JOIN timeline_entries t ON t.id = p.entry_id \
         LEFT JOIN customers k ON k.id = p.customer_id \
         ORDER BY p.score DESC, p.type, p.occurred_at DESC, p.entry_id DESC, p.customer_id"
    )
}

impl Store {
    /// One page of results, best first (ties: customers, then newer entries). Pages are by
    /// offset: relevance has no stable keyset.
    pub async fn search(
        &self,
        terms: &SearchTerms,
        f: &SearchFilter,
    ) -> anyhow::Result<Vec<SearchHit>> {
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let cap = if f.status.is_some() || f.connector_id.is_some() || f.customer_id.is_some() {
            CANDIDATES_FILTERED
        } else {
            CANDIDATES
        };
        with_pool!(self, read, |pool, pg| {
            let (sql, phrases) = if pg {
                let (q, binds) = terms.tsquery(6);
                (pg_sql(&q, f.includes_customers(), cap), binds)
            } else {
                let customers = if f.includes_customers() {
                    format!(" UNION ALL {SQLITE_CUSTOMERS}")
                } else {
                    String::new()
                };
                (
                    format!(
                        "WITH hits AS ({}{customers}){SQLITE_PAGE}",
                        sqlite_messages(cap)
                    ),
                    vec![terms.fts5()],
                )
            };
            let mut query = sqlx::query(&sql)
                .bind(f.status.as_deref())
                .bind(f.connector_id.as_deref())
                .bind(f.customer_id.as_deref())
                .bind(f.limit)
                .bind(f.offset);
            for p in &phrases {
                query = query.bind(p.as_str());
            }
            let mut out = Vec::new();
            for r in query.fetch_all(pool).await? {
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
    fn snippets_are_escaped_with_balanced_marks() {
        assert_eq!(
            html_snippet(Some("a <b> & \u{2}x\u{3} \u{3}\u{2}y")),
            "a &lt;b&gt; &amp; <mark>x</mark> <mark>y</mark>"
        );
        assert_eq!(html_snippet(None), "");
    }
}
