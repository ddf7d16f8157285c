#!/usr/bin/env python3
"""Every Switchboard benchmark in one go, one table at the end (see bench/README.md).

Run through ``bench/all.sh``. Each section calls an existing benchmark with its knobs and
reads the machine-readable ``@bench {json}`` lines it prints; this file only orchestrates,
judges the figures against the issues' targets and prints the table. Nothing here runs in
the hub.

Exit status: 0 when every selected section ran (even if a figure MISSED its target),
1 when a section failed to run, 2 on bad arguments, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("ingest", "pipeline", "replies", "api", "multinode", "email")
DEFAULT_SECTIONS = ("ingest", "pipeline", "replies", "api", "multinode")
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/postgres"
MARK = "@bench "


# ------------------------------------------------------------------------------- results


@dataclass
class Row:
    """One figure of the final table."""

    section: str
    figure: str
    backend: str
    value: Optional[float]
    unit: str
    target: str = ""
    verdict: str = "-"
    vs_noop: Optional[float] = None
    note: str = ""


@dataclass
class Target:
    """A figure's goal: ``op`` compares ``on`` ("value" or "ratio") with ``limit``."""

    op: str
    limit: float
    on: str = "value"
    text: str = ""

    def judge(self, value: Optional[float], ratio: Optional[float]) -> str:
        x = ratio if self.on == "ratio" else value
        if x is None:
            return "FAILED"
        ok = x >= self.limit if self.op == ">=" else x <= self.limit
        return "ok" if ok else "MISSED"


def parse_bench_lines(lines: Iterable[str]) -> list[dict]:
    """The JSON objects of every ``@bench {...}`` line; anything else is ignored."""
    out = []
    for line in lines:
        i = line.find(MARK)
        if i < 0:
            continue
        try:
            obj = json.loads(line[i + len(MARK):])
        except ValueError:
            continue
        if isinstance(obj, dict) and "bench" in obj:
            out.append(obj)
    return out


def num(obj: dict, key: str) -> Optional[float]:
    v = obj.get(key)
    if isinstance(v, bool) or v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def make_row(section, figure, backend, value, unit, target: Optional[Target] = None,
             ratio=None, note="") -> Row:
    row = Row(section, figure, backend, value, unit, vs_noop=ratio, note=note)
    if target is not None:
        row.target = target.text
        row.verdict = target.judge(value, ratio)
    return row


# ------------------------------------------------------------- figures of each section

# Issue 2: SQLite ingest >= 35% of the no-op, p99 <= 15 ms at 64 connections; normalise
# >= 5,000 events/s; lag p99 <= 250 ms at 1,000 events/s; "report the same on PostgreSQL".
# Issue 3: list/timeline p99 <= 10 ms SQLite, <= 15 ms PG; search <= 50 ms; reply <= 100 ms.
# Issue 5: email appended -> timeline p99 <= 2 s. Issue 8: 3 nodes >= 1.0x one node.
INGEST_RATIO = Target(">=", 0.35, "ratio", "≥ 0.35× no-op")
INGEST_P99 = Target("<=", 15.0, text="≤ 15 ms")
NORMALISE = Target(">=", 5000.0, text="≥ 5,000/s")
LAG_P99 = Target("<=", 250.0, text="≤ 250 ms")
REPLY_P99 = Target("<=", 100.0, text="≤ 100 ms")
EMAIL_P99 = Target("<=", 2000.0, text="≤ 2,000 ms")
MULTINODE = Target(">=", 1.0, "value", "≥ 1.0× 1 node")
API_TARGETS = {
    ("sqlite", "list"): Target("<=", 10.0, text="≤ 10 ms"),
    ("sqlite", "timeline"): Target("<=", 10.0, text="≤ 10 ms"),
    ("postgres", "list"): Target("<=", 15.0, text="≤ 15 ms"),
    ("postgres", "timeline"): Target("<=", 15.0, text="≤ 15 ms"),
    ("sqlite", "search"): Target("<=", 50.0, text="≤ 50 ms"),
    ("postgres", "search"): Target("<=", 50.0, text="≤ 50 ms"),
}
API_FIGURE = {
    "list": "GET /conversations?status=open p99",
    "timeline": "GET /customers/{id}/timeline p99",
    "conversation": "GET /conversations/{id} p99",
    "search": "GET /search?q={word} p99",
}
BACKEND = {"hub-sqlite": "sqlite", "hub-postgres": "postgres"}


def backend_rank(b: str) -> int:
    return {"sqlite": 0, "postgres": 1}.get(b, 2)


def ingest_rows(objs: list[dict], conns: int) -> list[Row]:
    rows = []
    by = {o.get("target"): o for o in objs if o.get("bench") == "ingest"}
    noop = by.get("noop")
    noop_rps = num(noop, "rps") if noop else None
    if noop:
        rows.append(make_row("ingest", f"no-op axum baseline req/s (wrk -c{conns})", "-",
                             noop_rps, "req/s", ratio=1.0, note=noop.get("note", "")))
    for name, backend in BACKEND.items():
        o = by.get(name)
        if not o:
            continue
        rps, p99 = num(o, "rps"), num(o, "p99_ms")
        ratio = rps / noop_rps if rps is not None and noop_rps else None
        bad = int(num(o, "non2xx") or 0) + int(num(o, "sock_errors") or 0)
        notes = [o.get("note", "")] if o.get("note") else []
        if bad:
            notes.append(f"{bad} non-2xx/socket errors")
        on_sqlite = backend == "sqlite"
        r = make_row("ingest", f"signed webhook req/s (wrk -c{conns})", backend, rps, "req/s",
                     INGEST_RATIO if on_sqlite else None, ratio, "; ".join(notes))
        if bad and r.verdict == "ok":
            r.verdict = "MISSED"
        if not on_sqlite:
            r.target = "report (issue 2)"
        rows.append(r)
        r = make_row("ingest", f"signed webhook p99 (wrk -c{conns})", backend, p99, "ms",
                     INGEST_P99 if on_sqlite else None)
        if not on_sqlite:
            r.target = "report (issue 2)"
        rows.append(r)
        rows.append(make_row("ingest", "hub peak RSS after the flood", backend,
                             num(o, "rss_mb"), "MB", note="VmHWM of `switchboard serve`"))
    return rows


def pipeline_rows(objs: list[dict]) -> list[Row]:
    rows = []
    for o in sorted((o for o in objs if o.get("bench") == "pipeline"),
                    key=lambda o: backend_rank(o.get("backend", ""))):
        b = o.get("backend", "?")
        sq = b == "sqlite"
        rows.append(make_row("pipeline", "raw events stored, 500 per statement", b,
                             num(o, "preload_per_s"), "rows/s",
                             note="Store::insert_raw_events; the scaling basis"))
        r = make_row("pipeline", f"normalise → timeline ({o.get('events', '?')} events)", b,
                     num(o, "normalise_per_s"), "events/s", NORMALISE if sq else None)
        if not sq:
            r.target = "report (issue 2)"
        rows.append(r)
        r = make_row("pipeline", f"ingest → timeline lag p99 at {o.get('rate', '?')}/s", b,
                     num(o, "lag_p99_ms"), "ms", LAG_P99 if sq else None,
                     note=f"p50 {fmt_num(num(o, 'lag_p50_ms'))} ms, "
                          f"{o.get('lag_events', '?')} events")
        if not sq:
            r.target = "report (issue 2)"
        rows.append(r)
    return rows


def replies_rows(objs: list[dict]) -> list[Row]:
    rows = []
    for o in sorted((o for o in objs if o.get("bench") == "replies"),
                    key=lambda o: backend_rank(o.get("backend", ""))):
        note = f"{o.get('delivered', '?')} of {o.get('replies', '?')} delivered at " \
               f"{o.get('rate', '?')}/s"
        r = make_row("replies", "reply 202 → fake provider p99", o.get("backend", "?"),
                     num(o, "p99_ms"), "ms", REPLY_P99, note=note)
        if o.get("delivered") != o.get("replies"):
            r.verdict = "MISSED"
        rows.append(r)
    return rows


def api_rows(objs: list[dict]) -> list[Row]:
    rows = []
    for o in sorted((o for o in objs if o.get("bench") == "api"),
                    key=lambda o: (backend_rank(o.get("backend", "")),
                                   list(API_FIGURE).index(o["endpoint"])
                                   if o.get("endpoint") in API_FIGURE else 9)):
        b, ep = o.get("backend", "?"), o.get("endpoint", "?")
        figure = API_FIGURE.get(ep, ep)
        if o.get("skipped"):
            rows.append(Row("api", figure, b, None, "ms", verdict="SKIPPED",
                            note=str(o["skipped"])))
            continue
        target = API_TARGETS.get((b, ep))
        notes = [f"p50 {fmt_num(num(o, 'p50_ms'))} ms",
                 f"{fmt_num(num(o, 'rps'))} req/s",
                 f"{fmt_num(num(o, 'cpu_us_per_req'))} µs CPU/req",
                 f"others used {fmt_num(num(o, 'cpu_rest'))}% CPU"]
        non200 = int(num(o, "non_200") or 0)
        if non200:
            notes.append(f"{non200} non-200")
        r = make_row("api", figure, b, num(o, "p99_ms"), "ms", target,
                     note=", ".join(notes))
        if target is None:
            r.target = "report"
        if non200 and r.verdict == "ok":
            r.verdict = "MISSED"
        rows.append(r)
    return rows


def email_rows(objs: list[dict]) -> list[Row]:
    return [make_row("email", "mail appended → timeline p99 (IDLE)", o.get("backend", "?"),
                     num(o, "p99_ms"), "ms", EMAIL_P99,
                     note=f"p50 {fmt_num(num(o, 'p50_ms'))} ms, {o.get('messages', '?')} mails")
            for o in objs if o.get("bench") == "email"]


MULTINODE_RATIO = re.compile(r"\bratio\s*[=:]\s*([0-9]+(?:\.[0-9]+)?)")


def multinode_rows(objs: list[dict], text: str) -> list[Row]:
    """bench/multinode.sh's figure: a ``@bench {"bench":"multinode","ratio":..}`` line, else
    the last ``ratio=<x>`` it printed."""
    for o in objs:
        if o.get("bench") == "multinode" and num(o, "ratio") is not None:
            note = ", ".join(f"{k} {o[k]}" for k in ("nodes", "single_rps", "multi_rps",
                                                    "failover_s") if k in o)
            return [make_row("multinode", "3 nodes on one PostgreSQL vs 1 node, ingest",
                             "postgres", num(o, "ratio"), "×", MULTINODE, note=note)]
    found = MULTINODE_RATIO.findall(text)
    if found:
        return [make_row("multinode", "3 nodes on one PostgreSQL vs 1 node, ingest",
                         "postgres", float(found[-1]), "×", MULTINODE,
                         note="ratio read from bench/multinode.sh output")]
    return []


def multinode_placeholder() -> Row:
    return Row("multinode", "3 nodes on one PostgreSQL vs 1 node, ingest", "postgres", None,
               "×", MULTINODE.text, "PENDING",
               note="see issue 8 multi-node bench (bench/multinode.sh is not in this tree)")


# ---------------------------------------------------------------------------- formatting


def fmt_num(v: Optional[float]) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_value(r: Row) -> str:
    return "-" if r.value is None else f"{fmt_num(r.value)} {r.unit}"


COLUMNS = ("section", "figure", "backend", "value", "target", "verdict", "vs no-op", "note")


def cells(r: Row) -> list[str]:
    ratio = "-" if r.vs_noop is None else f"{r.vs_noop:.3f}"
    return [r.section, r.figure, r.backend, fmt_value(r), r.target or "-", r.verdict, ratio,
            r.note]


def render_table(rows: list[Row]) -> str:
    table = [list(COLUMNS)] + [cells(r) for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(COLUMNS) - 1)]
    lines = []
    for t in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(t, widths)) + "  " + t[-1])
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 4)
    return "\n".join(line.rstrip() for line in lines)


def render_markdown(rows: list[Row]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        out.append("| " + " | ".join(esc(c) if c else " " for c in cells(r)) + " |")
    return "\n".join(out)


def render_sizes(sizes: dict) -> str:
    lines = []
    for backend, info in sizes.items():
        if "error" in info:
            lines.append(f"{backend}: {info['error']}")
            continue
        lines.append(f"{backend}: {info['where']}, total {mb(info['total_bytes'])}")
        lines.append(f"  {'table':<26} {'rows':>10} {'data':>10} {'indexes':>10} {'total':>10}")
        for t in info["tables"]:
            rows = "-" if t.get("rows") is None else f"{t['rows']:,}"
            lines.append(f"  {t['name']:<26} {rows:>10} {mb(t.get('data_bytes')):>10} "
                         f"{mb(t.get('index_bytes')):>10} {mb(t.get('total_bytes')):>10}")
        if info.get("indexes"):
            lines.append("  largest indexes: " + ", ".join(
                f"{i['name']} {mb(i['bytes'])}" for i in info["indexes"][:8]))
    return "\n".join(lines)


def mb(b: Optional[int]) -> str:
    if b is None:
        return "-"
    return f"{b / 1048576:.1f} MB"


# ------------------------------------------------------------------------------ running


class Runner:
    """Runs one child at a time in its own process group, logs its output, bounds its time."""

    def __init__(self, log_dir: Path, verbose: bool):
        self.log_dir = log_dir
        self.verbose = verbose
        self.child: Optional[subprocess.Popen] = None

    def run(self, name: str, cmd: list[str], env: dict, timeout_s: int,
            cwd: Path = ROOT) -> tuple[int, list[str]]:
        """Runs ``cmd``; returns its exit status (124 when it ran out of time) and its lines."""
        log_path = self.log_dir / f"{name}.log"
        say(f"{name}: {' '.join(cmd)}  (log: {log_path})")
        full_env = dict(os.environ)
        full_env.update({k: str(v) for k, v in env.items()})
        lines: list[str] = []
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(f"$ {' '.join(f'{k}={v}' for k, v in env.items())} {' '.join(cmd)}\n")
            log.flush()
            self.child = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          text=True, errors="replace", bufsize=1)
            stream = self.child.stdout
            assert stream is not None

            def pump() -> None:
                for line in stream:
                    log.write(line)
                    lines.append(line.rstrip("\n"))
                    if self.verbose or line.startswith(MARK) or is_progress(line):
                        tag = "" if line.startswith(f"[{name}]") else f"[{name}] "
                        sys.stderr.write(f"  {tag}{line}")

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            try:
                rc = self.child.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                say(f"{name}: still running after {timeout_s}s, stopping it")
                self.stop()
                rc = 124
            # Grandchildren may hold the pipe open; do not wait for them forever.
            reader.join(timeout=10)
        self.child = None
        return rc, list(lines)

    def stop(self) -> None:
        """Stops the running child's process group (only what this script started)."""
        c = self.child
        if c is None or c.poll() is not None:
            self.child = None
            return
        try:
            os.killpg(c.pid, signal.SIGTERM)
            c.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(c.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            c.wait()
        self.child = None


PROGRESS = re.compile(r"^(\[ingest\] (wrk|started|creating)|(sqlite|postgres): (seed|reusing|"
                      r"resuming|VACUUM)|\s+… |\s+seeded|\s*Running |error)")


def is_progress(line: str) -> bool:
    return bool(PROGRESS.match(line))


def say(msg: str) -> None:
    sys.stderr.write(f"[bench] {msg}\n")
    sys.stderr.flush()


def pg_reachable(url: str) -> tuple[bool, str]:
    if shutil.which("psql") is None:
        return False, "psql is not installed"
    try:
        p = subprocess.run(["psql", url, "-Atqc", "SELECT 1"], capture_output=True, text=True,
                           timeout=10)
    except subprocess.TimeoutExpired:
        return False, "psql timed out"
    if p.returncode != 0:
        return False, (p.stderr.strip().splitlines() or ["psql failed"])[-1]
    return True, ""


def pg_host_ok(url: str) -> bool:
    return urllib.parse.urlsplit(url).hostname in ("127.0.0.1", "localhost")


def pg_db_url(admin: str, db: str) -> str:
    p = urllib.parse.urlsplit(admin)
    return urllib.parse.urlunsplit(p._replace(path="/" + db))


def psql_rows(url: str, sql: str) -> list[list[str]]:
    p = subprocess.run(["psql", url, "-AtqF", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip() or "psql failed")
    return [line.split("\t") for line in p.stdout.splitlines() if line]


def generator_version() -> int:
    """The api bench's GENERATOR constant: the cache key of a seeded data set."""
    text = (ROOT / "benches" / "api.rs").read_text(encoding="utf-8")
    m = re.search(r"^const GENERATOR: u32 = (\d+);", text, re.M)
    if not m:
        raise RuntimeError("benches/api.rs has no `const GENERATOR: u32 = N;`")
    return int(m.group(1))


# Tables whose exact row counts the size report shows (the rest are small or empty).
COUNTED = ("raw_events", "jobs", "timeline_entries", "conversations", "customers",
           "identities", "events")
PG_SIZES_SQL = """
SELECT c.relname, 0, pg_table_size(c.oid), pg_indexes_size(c.oid),
       pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
ORDER BY pg_total_relation_size(c.oid) DESC
"""
PG_INDEX_SQL = """
SELECT i.relname, pg_relation_size(i.oid)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_namespace n ON n.oid = i.relnamespace
WHERE n.nspname = 'public'
ORDER BY 2 DESC LIMIT 20
"""


def pg_sizes(url: str, db: str) -> dict:
    try:
        tables = [{"name": r[0], "rows": None, "data_bytes": int(r[2]),
                   "index_bytes": int(r[3]), "total_bytes": int(r[4])}
                  for r in psql_rows(url, PG_SIZES_SQL)]
        for t in tables:
            if t["name"] in COUNTED:
                t["rows"] = int(psql_rows(url, f'SELECT COUNT(*) FROM "{t["name"]}"')[0][0])
        indexes = [{"name": r[0], "bytes": int(r[1])} for r in psql_rows(url, PG_INDEX_SQL)]
        total = int(psql_rows(url, "SELECT pg_database_size(current_database())")[0][0])
    except (RuntimeError, subprocess.TimeoutExpired, ValueError, IndexError) as e:
        return {"error": f"sizes not measured: {e}"}
    return {"where": f"database {db}", "total_bytes": total, "tables": tables[:15],
            "indexes": indexes}


def sqlite_sizes(path: Path) -> dict:
    if not path.exists():
        return {"error": f"{path} does not exist"}
    total = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            per_obj = con.execute(
                "SELECT s.name, m.type, COALESCE(m.tbl_name, s.name), SUM(s.pgsize) "
                "FROM dbstat s LEFT JOIN sqlite_master m ON m.name = s.name "
                "GROUP BY s.name").fetchall()
            counts = {}
            for (name,) in con.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
                    f"({','.join('?' * len(COUNTED))})", COUNTED):
                counts[name] = con.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error as e:
        return {"where": str(path), "total_bytes": total, "tables": [],
                "error": f"file {mb(total)}; per-table sizes not measured: {e}"}
    tables: dict[str, dict] = {}
    indexes = []
    for name, kind, table, size in per_obj:
        t = tables.setdefault(table, {"name": table, "rows": counts.get(table),
                                      "data_bytes": 0, "index_bytes": 0, "total_bytes": 0})
        if kind == "index":
            t["index_bytes"] += size
            indexes.append({"name": name, "bytes": size})
        else:
            t["data_bytes"] += size
        t["total_bytes"] += size
    ordered = sorted(tables.values(), key=lambda t: -t["total_bytes"])
    indexes.sort(key=lambda i: -i["bytes"])
    return {"where": str(path), "total_bytes": total, "tables": ordered[:15],
            "indexes": indexes[:20]}


# -------------------------------------------------------------------------------- main


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    sizes: dict = field(default_factory=dict)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/all.sh",
        description="Run every Switchboard benchmark (signed-webhook ingest vs a no-op axum "
                    "baseline, normalise throughput and lag, reply latency, inbox API p99 on "
                    "the seeded 1M-message data set, multi-node) and print one table with "
                    "each figure, its target from the issues and the verdict.",
        epilog="Exit status: 0 when everything ran (a figure below target prints MISSED), "
               "1 when a section failed to run, 2 on bad arguments. See bench/README.md.")
    ap.add_argument("--quick", action="store_true",
                    help="short runs and a tenth of the API data set (a few minutes)")
    ap.add_argument("--only", metavar="LIST",
                    help=f"comma list of sections: {','.join(SECTIONS)} "
                         f"(default: {','.join(DEFAULT_SECTIONS)}; email needs Dovecot)")
    ap.add_argument("--pg-url", metavar="URL",
                    help="PostgreSQL admin URL on 127.0.0.1 (default: $PG_URL, else "
                         f"{DEFAULT_PG} when it answers); each bench makes its own database")
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    ap.add_argument("--cache-dir", metavar="DIR", default=str(ROOT / "target" / "bench-cache"),
                    help="where the seeded API data set is kept between runs "
                         "(default: target/bench-cache)")
    ap.add_argument("--drop-cache", action="store_true",
                    help="delete the cached API data sets (file and PostgreSQL database) first")
    ap.add_argument("--skip-build", action="store_true",
                    help="use the binaries already built in target/release")
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="echo every line of the benches' output")
    args = ap.parse_args(argv)
    if args.only:
        chosen = [s.strip() for s in args.only.split(",") if s.strip()]
        bad = [s for s in chosen if s not in SECTIONS]
        if bad or not chosen:
            ap.error(f"--only: unknown section(s) {','.join(bad) or '(none)'}; "
                     f"choose from {','.join(SECTIONS)}")
        args.sections = [s for s in SECTIONS if s in chosen]
    else:
        args.sections = list(DEFAULT_SECTIONS)
    if args.pg_url and args.no_pg:
        ap.error("--pg-url and --no-pg contradict each other")
    if args.pg_url and not pg_host_ok(args.pg_url):
        ap.error("--pg-url must point at 127.0.0.1 or localhost")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    run_dir = ROOT / "target" / "bench-runs" / started.strftime("%Y%m%dT%H%M%SZ")
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache_dir).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    runner = Runner(run_dir, args.verbose)

    def on_signal(signum, _frame):
        runner.stop()
        raise Interrupted(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    # PostgreSQL: explicit, from the environment, or the local default when it answers.
    pg, pg_why = None, "--no-pg"
    if not args.no_pg:
        cand = args.pg_url or os.environ.get("PG_URL") or DEFAULT_PG
        if not pg_host_ok(cand):
            say(f"PG_URL must point at 127.0.0.1 or localhost: {cand}")
            return 2
        ok, why = pg_reachable(cand)
        if ok:
            pg = cand
        elif args.pg_url or os.environ.get("PG_URL"):
            say(f"PostgreSQL at {cand} does not answer: {why}")
            return 1
        else:
            pg_why = f"no PostgreSQL at {cand} ({why})"
    quick = args.quick
    say(f"sections {','.join(args.sections)}; {'quick' if quick else 'full'} run; "
        f"PostgreSQL {pg or 'off: ' + pg_why}; logs in {run_dir}")
    load0 = os.getloadavg()
    out = Outcome()

    if not args.skip_build:
        benches = [b for s, b in (("pipeline", "pipeline"), ("replies", "replies"),
                                  ("api", "api"), ("email", "email_latency"))
                   if s in args.sections]
        cmds = [["cargo", "build", "--release", "--bins"]]
        if benches:
            cmds.append(["cargo", "bench", "--no-run"] + [a for b in benches
                                                          for a in ("--bench", b)])
        for i, cmd in enumerate(cmds):
            rc, _ = runner.run(f"build{i}", cmd, {}, 3600)
            if rc != 0:
                say("build failed; nothing measured")
                return 1

    def section(name: str, cmd: list[str], env: dict, timeout_s: int,
                to_rows: Callable[[list[dict], str], list[Row]], expect: int) -> list[dict]:
        rc, lines = runner.run(name, cmd, env, timeout_s)
        objs = parse_bench_lines(lines)
        rows = to_rows(objs, "\n".join(lines))
        out.rows.extend(rows)
        if rc != 0 or len(rows) < expect:
            why = "timed out" if rc == 124 else f"exit {rc}" if rc else "no figures printed"
            out.failed.append(f"{name} ({why}; see {run_dir / (name + '.log')})")
            out.rows.append(Row(name, f"{name} section", "-", None, "", verdict="FAILED",
                                note=f"{why}; log {run_dir / (name + '.log')}"))
        return objs

    pg_env = {"PG_URL": pg} if pg else {}
    n_backends = 2 if pg else 1
    conns = 64
    interrupted = 0
    try:
        if "ingest" in args.sections:
            env = {"CONNS": conns, "DURATION": "5s" if quick else "10s", "SKIP_BUILD": 1,
                   **pg_env}
            section("ingest", ["bash", str(ROOT / "bench" / "ingest.sh")], env, 900,
                    lambda o, _t: ingest_rows(o, conns), 1 + 3 * n_backends)
        if "pipeline" in args.sections:
            env = {"EVENTS": 10000 if quick else 50000, "LAG_SECS": 5 if quick else 10,
                   "RATE": 1000, **pg_env}
            section("pipeline", ["cargo", "bench", "--bench", "pipeline"], env, 1200,
                    lambda o, _t: pipeline_rows(o), 3 * n_backends)
        if "replies" in args.sections:
            env = {"REPLIES": 300 if quick else 1000, "RATE": 100, **pg_env}
            section("replies", ["cargo", "bench", "--bench", "replies"], env, 900,
                    lambda o, _t: replies_rows(o), n_backends)
        if "api" in args.sections:
            gen = generator_version()
            scale = 0.1 if quick else 1.0
            tag = f"g{gen}_s{round(scale * 1000)}"
            seed_db = cache / f"apibench-{tag}.db"
            pg_db = f"sb_apibench_{tag}"
            if args.drop_cache:
                for p in cache.glob("apibench-*.db*"):
                    p.unlink()
                if pg:
                    for (db,) in psql_rows(pg, "SELECT datname FROM pg_database "
                                               "WHERE datname LIKE 'sb\\_apibench\\_g%'"):
                        say(f"dropping cached database {db}")
                        psql_rows(pg, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            env = {"SCALE": scale, "SEED_DB": seed_db, "DURATION": 4 if quick else 10,
                   "WARMUP": 1 if quick else 2, "CLIENTS": 32}
            if pg:
                env.update({"PG_URL": pg, "PG_DB": pg_db})
            say(f"api data set cache: {seed_db}" + (f" and database {pg_db}" if pg else "")
                + " (seeded once per generator version and scale)")
            section("api", ["cargo", "bench", "--bench", "api"], env, 2400 if not quick else 900,
                    lambda o, _t: api_rows(o), 3 * n_backends)
            out.sizes["sqlite"] = sqlite_sizes(seed_db)
            if pg:
                out.sizes["postgres"] = pg_sizes(pg_db_url(pg, pg_db), pg_db)
        if "multinode" in args.sections:
            script = ROOT / "bench" / "multinode.sh"
            if not pg:
                out.rows.append(Row("multinode", "3 nodes on one PostgreSQL vs 1 node, ingest",
                                    "postgres", None, "×", MULTINODE.text, "SKIPPED",
                                    note=f"needs PostgreSQL: {pg_why}"))
            elif script.exists():
                env = {"PG_URL": pg, "QUICK": int(quick), "DURATION": "5s" if quick else "10s",
                       "SKIP_BUILD": 1}
                section("multinode", ["bash", str(script)], env, 1200, multinode_rows, 1)
            else:
                out.rows.append(multinode_placeholder())
        if "email" in args.sections:
            env = {"BENCH_MESSAGES": 30 if quick else 100}
            if pg:
                env.update({"BENCH_PG": 1, "SWITCHBOARD_TEST_PG_URL": pg})
            if shutil.which("dovecot") is None:
                out.rows.append(Row("email", "mail appended → timeline p99 (IDLE)", "-", None,
                                    "ms", EMAIL_P99.text, "SKIPPED",
                                    note="dovecot is not installed (apt-get install dovecot-imapd)"))
            else:
                section("email", ["cargo", "bench", "--bench", "email_latency"], env, 900,
                        lambda o, _t: email_rows(o), n_backends)
    except Interrupted as e:
        # Ctrl-C or a TERM: report what finished; the section that was running is lost.
        interrupted = e.signum
        out.failed.append("run interrupted")
        out.rows.append(Row("-", "run interrupted here; later sections did not run", "-",
                            None, "", verdict="FAILED"))

    finished = dt.datetime.now(dt.timezone.utc)
    load1 = os.getloadavg()
    header = (f"Switchboard benchmarks, {started:%Y-%m-%d %H:%M} → {finished:%H:%M} UTC, "
              f"{'quick' if quick else 'full'} run, {os.cpu_count()} cores, load average "
              f"{load0[0]:.1f} at start / {load1[0]:.1f} at end, commit {git_head()}")
    print()
    print(header)
    print(render_table(out.rows))
    if out.sizes:
        print()
        print(f"API data set sizes ({'SCALE=0.1' if quick else '1M messages'}):")
        print(render_sizes(out.sizes))
    missed = sum(r.verdict == "MISSED" for r in out.rows)
    print()
    print(f"{len(out.rows)} figures, {missed} MISSED, {len(out.failed)} section(s) failed to run"
          + (": " + "; ".join(out.failed) if out.failed else ""))
    print(f"logs: {run_dir}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "started": started.isoformat(), "finished": finished.isoformat(),
            "quick": quick, "postgres": bool(pg), "commit": git_head(),
            "cores": os.cpu_count(), "loadavg_start": load0[0], "loadavg_end": load1[0],
            "rows": [asdict(r) for r in out.rows], "sizes": out.sizes,
            "failed": out.failed}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.markdown:
        md = header + "\n\n" + render_markdown(out.rows) + "\n"
        if out.sizes:
            md += "\n```\n" + render_sizes(out.sizes) + "\n```\n"
        Path(args.markdown).write_text(md, encoding="utf-8")
    if interrupted:
        return 130 if interrupted == signal.SIGINT else 143
    return 1 if out.failed else 0


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def git_head() -> str:
    try:
        p = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return p.stdout.strip() + ("+changes" if dirty else "") if p.returncode == 0 else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Interrupted as stop:
        sys.exit(130 if stop.signum == signal.SIGINT else 143)
