"""Transparency log benchmark: durable batched appends/s and inclusion proofs/s.

Peer, measured in the same run on the same disk: SQLite (stdlib sqlite3) in WAL mode with
synchronous=FULL, one transaction per batch of the same entries into an append-only table.
For proofs the peer is a SQLite primary-key lookup of the same entry: the cost a plain audit
table pays to answer "is this event recorded", which the log answers with a proof instead.

    .venv/bin/python bench/tlog.py [--entries 1000000] [--batch 1000] [--proofs 100000]
"""

from __future__ import annotations

import argparse
import pathlib
import random
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from borderline.tlog import TransparencyLog, leaf_hash, verify_directory, verify_inclusion


def make_entry(i: int) -> bytes:
    """About the size of a serialized access event."""
    return (
        b'{"seq":%d,"account":"user%d@mail.example.test","justification":'
        b'"CUSTOMER_INITIATED_ACCESS","actor":"imap-session","region":"eu-west-1"}' % (i, i % 9973)
    )


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def batches(n: int, size: int) -> list[list[bytes]]:
    return [[make_entry(i) for i in range(s, min(n, s + size))] for s in range(0, n, size)]


ORIGIN = "mail.example.test/eu-west-1"
KEY = Ed25519PrivateKey.generate()


def bench_log(path: pathlib.Path, work: Sequence[list[bytes]]) -> tuple[TransparencyLog, float]:
    log = TransparencyLog(path, ORIGIN, KEY)

    def run() -> None:
        for b in work:
            log.append_batch(b)

    return log, timed(run)


def bench_sqlite(
    path: pathlib.Path, work: Sequence[list[bytes]]
) -> tuple[sqlite3.Connection, float]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")

    def run() -> None:
        for b in work:
            db.execute("BEGIN")
            db.executemany("INSERT INTO events (body) VALUES (?)", [(e,) for e in b])
            db.execute("COMMIT")

    return db, timed(run)


def bench_threads(root: pathlib.Path, threads: int, per_thread: int) -> tuple[float, float]:
    """Single-entry appends from many threads: group commit vs one SQLite commit each."""
    log = TransparencyLog(root / "threads-log", ORIGIN, KEY)
    db_path = root / "threads-peer.db"
    setup = sqlite3.connect(db_path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    setup.close()

    def tlog_worker(t: int) -> None:
        for i in range(per_thread):
            log.append(make_entry(t * per_thread + i))

    def sqlite_worker(t: int) -> None:
        db = sqlite3.connect(db_path, isolation_level=None, timeout=60)
        db.execute("PRAGMA synchronous=FULL")
        for i in range(per_thread):
            db.execute("INSERT INTO events (body) VALUES (?)", (make_entry(t * per_thread + i),))
        db.close()

    def run(worker: Callable[[int], None]) -> float:
        pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        start = time.perf_counter()
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        return time.perf_counter() - start

    total = threads * per_thread
    rates = total / run(tlog_worker), total / run(sqlite_worker)
    log.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--proofs", type=int, default=100_000)
    parser.add_argument(
        "--dir",
        type=pathlib.Path,
        default=pathlib.Path.cwd(),
        help="where to put the scratch directory (default: here; /tmp can be a slower disk)",
    )
    args = parser.parse_args()
    n = args.entries
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = pathlib.Path(tmp)
        work = batches(n, args.batch)
        print(f"{n:,} entries of ~{len(make_entry(n // 2))} bytes, batches of {args.batch}")
        print(f"scratch directory {root} (both contenders on the same disk)")

        log, t_log = bench_log(root / "log", work)
        db, t_db = bench_sqlite(root / "peer.db", work)
        log_rate, db_rate = n / t_log, n / t_db
        print(f"durable appends/s   tlog {log_rate:12,.0f}   ({t_log:.2f} s)")
        print(f"                    peer {db_rate:12,.0f}   SQLite WAL synchronous=FULL")
        print(f"                    ratio tlog/peer {log_rate / db_rate:.2f}")

        t_rate, s_rate = bench_threads(root, 8, 2500)
        print(f"single appends/s    tlog {t_rate:12,.0f}   8 threads, group commit")
        print(f"                    peer {s_rate:12,.0f}   SQLite WAL FULL, 8 threads, autocommit")
        print(f"                    ratio tlog/peer {t_rate / s_rate:.2f}")

        t_cp = timed(log.checkpoint)
        print(f"first checkpoint at {n:,} (partial tiles + fsync of all tiles) {t_cp:.2f} s")

        rng = random.Random(7)
        picks = [rng.randrange(n) for _ in range(args.proofs)]
        t_proofs = timed(lambda: [log.inclusion_proof(i) for i in picks])
        t_select = timed(
            lambda: [
                db.execute("SELECT body FROM events WHERE id = ?", (i + 1,)).fetchone()
                for i in picks
            ]
        )
        proof_rate, select_rate = args.proofs / t_proofs, args.proofs / t_select
        print(f"inclusion proofs/s  tlog {proof_rate:12,.0f}   at size {n:,}")
        print(f"                    peer {select_rate:12,.0f}   SQLite primary-key SELECT")
        print(f"                    ratio tlog/peer {proof_rate / select_rate:.2f}")

        size, tree_root = log.size, log.root()
        sample = picks[:10_000]
        proofs = [(i, log.inclusion_proof(i), leaf_hash(log.entry(i))) for i in sample]

        def verify_all() -> None:
            for i, p, h in proofs:
                verify_inclusion(h, i, size, p, tree_root)

        t_verify = timed(verify_all)
        print(f"proof verifications/s      {len(sample) / t_verify:12,.0f}")

        vkey = log.verifier_key()
        log.close()
        db.close()
        t_open = timed(lambda: TransparencyLog(root / "log", ORIGIN, KEY).close())
        print(f"reopen (journal replay + checks) of {n:,} entries {t_open:.2f} s")
        t_verify_dir = timed(lambda: verify_directory(root / "log", vkey))
        print(f"offline verify_directory of {n:,} entries {t_verify_dir:.2f} s")


if __name__ == "__main__":
    main()
