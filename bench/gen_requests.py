#!/usr/bin/env python3
"""Generate signed webhook requests for the generic connector (bench/README.md).

Writes one line per request: ``<signature>\\t<body>`` where ``body`` is a
single-line JSON document of about 1.5 KB and ``signature`` is
``sha256=<hex HMAC-SHA256(secret, body bytes)>``, the value of the
``x-switchboard-signature`` header.

Event ids are ``bench-<run>-<n>``: use a fresh run id per measurement, the hub
deduplicates on the event id and re-used ids would measure the duplicate path.

    python3 bench/gen_requests.py 200000 --run r1 -o /tmp/requests.tsv
"""

import argparse
import hashlib
import hmac
import re
import sys
import time

DEFAULT_SECRET = "bench-secret"
DEFAULT_SIZE = 1536
SPREAD = 5000  # distinct conversations / customers

WORDS = (
    "hello there I would like to know the status of my order which was "
    "placed last week and has not arrived yet could you please check the "
    "tracking number and tell me when it will be delivered thanks a lot "
).split()


_PAD_CACHE: dict = {}


def padding(n: int, length: int) -> str:
    """Deterministic ASCII text of exactly ``length`` characters (varies with n)."""
    key = (n % len(WORDS), length)
    text = _PAD_CACHE.get(key)
    if text is None:
        out = []
        size = 0
        i = n
        while size < length:
            w = WORDS[i % len(WORDS)]
            out.append(w)
            size += len(w) + 1
            i += 7
        text = " ".join(out)[:length].rstrip().ljust(length, ".")
        _PAD_CACHE[key] = text
    return text


def render(run: str, n: int, created_at: int, text: str) -> str:
    # Every interpolated value is plain ASCII without quotes or backslashes
    # (run ids are checked in main), so no JSON escaping is needed.
    k = n % SPREAD
    return (
        f'{{"id":"bench-{run}-{n}","type":"message.created","created_at":{created_at},'
        f'"conversation":{{"id":"conv-{k}"}},'
        f'"message":{{"id":"m-{run}-{n}","text":"{text}"}},'
        f'"customer":{{"id":"cust-{k}","email":"user{k}@example.com","name":"User {k}"}}}}'
    )


def body_for(run: str, n: int, created_at: int, target: int) -> bytes:
    text_len = max(0, target - len(render(run, n, created_at, "")))
    return render(run, n, created_at, padding(n, text_len)).encode("ascii")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("count", type=int, help="number of requests to write")
    ap.add_argument("--run", default=None,
                    help="run id that makes event ids unique (default: unix time)")
    ap.add_argument("--secret", default=DEFAULT_SECRET,
                    help=f"HMAC secret (default: {DEFAULT_SECRET})")
    ap.add_argument("--size", type=int, default=DEFAULT_SIZE,
                    help=f"target body size in bytes (default: {DEFAULT_SIZE})")
    ap.add_argument("-o", "--output", default="-",
                    help="output file (default: stdout)")
    args = ap.parse_args()
    if args.count < 0:
        ap.error("count must be >= 0")

    run = args.run if args.run else str(int(time.time()))
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", run):
        ap.error("run id must match [A-Za-z0-9._-]{1,64}")
    secret = args.secret.encode()
    created_at = int(time.time())

    out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")
    try:
        buf = []
        for n in range(args.count):
            body = body_for(run, n, created_at, args.size)
            sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
            buf.append(b"sha256=" + sig.encode() + b"\t" + body + b"\n")
            if len(buf) >= 4096:
                out.writelines(buf)
                buf.clear()
        out.writelines(buf)
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
