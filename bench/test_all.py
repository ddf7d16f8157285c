"""Unit tests of bench/all.py's parsing and judging (python3 -m unittest discover -s bench)."""

import json
import os
import sqlite3
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import all as bench  # noqa: E402  (the module under test, bench/all.py)


def line(**obj) -> str:
    return bench.MARK + json.dumps(obj)


class ParseBenchLines(unittest.TestCase):
    def test_reads_only_well_formed_bench_objects(self):
        lines = [
            "   Compiling switchboard v0.1.0",
            line(bench="pipeline", backend="sqlite", normalise_per_s=21000.5),
            "@bench {not json",
            "@bench [1, 2]",
            '@bench {"no_bench_key": 1}',
            "  [ingest] " + line(bench="ingest", target="noop", rps=50000),
        ]
        objs = bench.parse_bench_lines(lines)
        self.assertEqual([o["bench"] for o in objs], ["pipeline", "ingest"])
        self.assertEqual(objs[0]["normalise_per_s"], 21000.5)


class IngestRows(unittest.TestCase):
    def objs(self, hub_rps, hub_p99, non2xx=0):
        return bench.parse_bench_lines([
            line(bench="ingest", target="noop", rps=40000, p99_ms=3.0, non2xx=0,
                 sock_errors=0, rss_mb=6, note=""),
            line(bench="ingest", target="hub-sqlite", rps=hub_rps, p99_ms=hub_p99,
                 non2xx=non2xx, sock_errors=0, rss_mb=80, note=""),
            line(bench="ingest", target="hub-postgres", rps=9000, p99_ms=30.0, non2xx=0,
                 sock_errors=0, rss_mb=90, note=""),
        ])

    def test_sqlite_ratio_to_the_noop_run_decides_the_verdict(self):
        rows = bench.ingest_rows(self.objs(16000, 9.0), 64)
        sq = [r for r in rows if r.backend == "sqlite"]
        rps = next(r for r in sq if r.unit == "req/s")
        self.assertAlmostEqual(rps.vs_noop, 0.4)
        self.assertEqual(rps.verdict, "ok")
        p99 = next(r for r in sq if r.unit == "ms")
        self.assertEqual(p99.verdict, "ok")
        rows = bench.ingest_rows(self.objs(12000, 20.0), 64)
        self.assertEqual([r.verdict for r in rows if r.backend == "sqlite" and r.target],
                         ["MISSED", "MISSED"])

    def test_errors_during_the_flood_make_a_fast_run_miss(self):
        rows = bench.ingest_rows(self.objs(30000, 5.0, non2xx=12), 64)
        rps = next(r for r in rows if r.backend == "sqlite" and r.unit == "req/s")
        self.assertEqual(rps.verdict, "MISSED")
        self.assertIn("12 non-2xx", rps.note)

    def test_postgres_is_reported_without_a_target_and_rss_is_a_row(self):
        rows = bench.ingest_rows(self.objs(16000, 9.0), 64)
        pg = [r for r in rows if r.backend == "postgres"]
        self.assertEqual({r.verdict for r in pg}, {"-"})
        self.assertAlmostEqual(next(r for r in pg if r.unit == "req/s").vs_noop, 0.225)
        self.assertEqual(next(r for r in pg if r.unit == "MB").value, 90)

    def test_a_target_that_failed_to_run_is_failed_not_missed(self):
        objs = bench.parse_bench_lines([
            line(bench="ingest", target="noop", rps=40000, p99_ms=3.0),
            line(bench="ingest", target="hub-sqlite", rps=None, p99_ms=None,
                 note="FAILED (see log above)"),
        ])
        rows = bench.ingest_rows(objs, 64)
        self.assertEqual([r.verdict for r in rows if r.backend == "sqlite" and r.target],
                         ["FAILED", "FAILED"])


class OtherSections(unittest.TestCase):
    def test_pipeline_targets_apply_to_sqlite_only(self):
        objs = bench.parse_bench_lines([
            line(bench="pipeline", backend="postgres", events=50000, preload_per_s=60000,
                 normalise_per_s=4000, rate=1000, lag_events=10000, lag_p50_ms=2,
                 lag_p99_ms=400),
            line(bench="pipeline", backend="sqlite", events=50000, preload_per_s=90000,
                 normalise_per_s=4000, rate=1000, lag_events=10000, lag_p50_ms=2,
                 lag_p99_ms=3),
        ])
        rows = bench.pipeline_rows(objs)
        self.assertEqual(rows[0].backend, "sqlite")
        self.assertEqual([r.verdict for r in rows],
                         ["-", "MISSED", "ok", "-", "-", "-"])

    def test_api_targets_differ_by_backend_and_non_200_misses(self):
        objs = bench.parse_bench_lines([
            line(bench="api", backend="postgres", endpoint="list", p99_ms=12.0, non_200=0),
            line(bench="api", backend="sqlite", endpoint="search", p99_ms=40.0, non_200=3),
            line(bench="api", backend="sqlite", endpoint="list", p99_ms=12.0, non_200=0),
            line(bench="api", backend="sqlite", endpoint="conversation", p99_ms=5.0,
                 non_200=0),
            line(bench="api", backend="sqlite", endpoint="timeline", skipped="route absent"),
        ])
        rows = bench.api_rows(objs)
        got = [(r.backend, r.figure.split()[1], r.verdict) for r in rows]
        self.assertEqual(got, [
            ("sqlite", "/conversations?status=open", "MISSED"),
            ("sqlite", "/customers/{id}/timeline", "SKIPPED"),
            ("sqlite", "/conversations/{id}", "-"),
            ("sqlite", "/search?q={word}", "MISSED"),
            ("postgres", "/conversations?status=open", "ok"),
        ])

    def test_replies_that_never_arrived_miss_even_when_fast(self):
        objs = bench.parse_bench_lines([
            line(bench="replies", backend="sqlite", replies=1000, delivered=990, rate=100,
                 p99_ms=5.0)])
        self.assertEqual(bench.replies_rows(objs)[0].verdict, "MISSED")

    def test_multinode_reads_a_bench_line_or_a_ratio_in_plain_output(self):
        rows = bench.multinode_rows(
            bench.parse_bench_lines([line(bench="multinode", ratio=1.12, nodes=3)]), "")
        self.assertEqual((rows[0].value, rows[0].verdict), (1.12, "ok"))
        rows = bench.multinode_rows([], "1 node 9000 req/s\n3 nodes 8000 req/s ratio=0.89\n")
        self.assertEqual((rows[0].value, rows[0].verdict), (0.89, "MISSED"))
        self.assertEqual(bench.multinode_rows([], "no figure here"), [])
        self.assertEqual(bench.multinode_placeholder().verdict, "PENDING")


class Rendering(unittest.TestCase):
    def test_table_aligns_columns_and_markdown_escapes_pipes(self):
        rows = [bench.Row("api", "GET /a|b p99", "sqlite", 12.345, "ms", "≤ 10 ms", "MISSED",
                          None, "note"),
                bench.Row("ingest", "req/s", "sqlite", 16000, "req/s", "≥ 0.35× no-op", "ok",
                          0.4, "")]
        table = bench.render_table(rows).splitlines()
        self.assertEqual(len(table), 4)
        self.assertEqual(table[2].index("sqlite"), table[3].index("sqlite"))
        self.assertIn("12.3 ms", table[2])
        self.assertIn("16,000 req/s", table[3])
        self.assertIn("0.400", table[3])
        md = bench.render_markdown(rows)
        self.assertIn("GET /a\\|b p99", md)


class Sizes(unittest.TestCase):
    def test_sqlite_sizes_sum_tables_and_their_indexes(self):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "x.db"
            con = sqlite3.connect(path)
            con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
            con.execute("CREATE INDEX customers_name ON customers (name)")
            con.executemany("INSERT INTO customers (name) VALUES (?)",
                            [(f"name {i}" * 5,) for i in range(2000)])
            con.commit()
            con.close()
            sizes = bench.sqlite_sizes(path)
        if "error" in sizes:
            self.skipTest(f"this sqlite3 has no dbstat: {sizes['error']}")
        t = next(t for t in sizes["tables"] if t["name"] == "customers")
        self.assertEqual(t["rows"], 2000)
        self.assertGreater(t["index_bytes"], 0)
        self.assertEqual(t["total_bytes"], t["data_bytes"] + t["index_bytes"])
        self.assertEqual(sizes["indexes"][0]["name"], "customers_name")


class Arguments(unittest.TestCase):
    def test_only_rejects_unknown_sections_and_keeps_the_run_order(self):
        with self.assertRaises(SystemExit):
            bench.parse_args(["--only", "ingest,nope"])
        self.assertEqual(bench.parse_args(["--only", "api,ingest"]).sections, ["ingest", "api"])

    def test_postgres_must_be_local(self):
        with self.assertRaises(SystemExit):
            bench.parse_args(["--pg-url", "postgres://postgres@db.example.com/postgres"])
        self.assertTrue(bench.pg_host_ok("postgres://postgres@127.0.0.1:5432/postgres"))

    def test_the_cache_key_is_the_api_bench_generator_version(self):
        self.assertGreaterEqual(bench.generator_version(), 1)


if __name__ == "__main__":
    unittest.main()
