#!/usr/bin/env python3
"""The Python peer of ml-connector's journal loop (issue 18): what a careful team would write
in an afternoon, with nothing but the standard library.

    python3 benches/peers/python_peer.py 100000 [--destinations D] [--machine]

It does the same work as `cargo run --release -p ml-benches --example journal_loop -- N`:

* N synthetic Oracle-shaped supplier invoices (key i, business fields, two lines, and the raw
  Oracle JSON with 1-3 lines of 1-2 distributions each: a ~2.2 KB JSON body, like the body
  ml-store journals), read in pages of 500;
* a SQLite journal in a new temporary directory, WAL, synchronous=NORMAL, with the same
  tables and indexes that matter (records with a unique dedupe key, destinations, deliveries
  with the head-of-line partial index, attempts, positions);
* per page, ONE transaction: the 500 records (INSERT OR IGNORE on the dedupe key), one
  planned delivery each (one destination per record, round robin over D destinations), and
  the stream position;
* then per delivery, in id order: mark it in flight (+ an attempt row) and COMMIT; read the
  record and render a one-line message; send it to a counting sink; mark it delivered (+ the
  attempt's outcome and receipt) and COMMIT.

With --minimal it does only what the issue's one-line description says (no attempt rows, and
the message is the record key instead of a rendered record read back from the journal): less
work than ml-connector does, so a stricter baseline.

The clock covers everything from the first page to the last delivery (not the set-up). It
prints records/s (with --machine: one line `records_per_second=<f>`).
"""

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time

PAGE = 500
EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z; invoice i is i/10 s later
SUPPLIERS = ["Müller GmbH", "株式会社テスト", "Ørsted A/S", "Acme Supplies", "Plain Supplier Inc"]
DEPARTMENTS = ["110", "520", "610", "740"]
ACCOUNTS = ["7640", "7699", "5110", "6420"]
LINE_TEXTS = ["Office supplies", "Laptops", "Freight"]

SCHEMA = """
CREATE TABLE positions (stream TEXT PRIMARY KEY NOT NULL, position TEXT NOT NULL,
    updated_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE records (
    id INTEGER PRIMARY KEY, stream TEXT NOT NULL, dedupe_key TEXT NOT NULL,
    dedupe_version TEXT NOT NULL, record_key TEXT NOT NULL, journaled_at INTEGER NOT NULL,
    body TEXT NOT NULL);
CREATE UNIQUE INDEX records_dedupe ON records (stream, dedupe_key, dedupe_version);
CREATE INDEX records_by_key ON records (stream, record_key);
CREATE TABLE destinations (id INTEGER PRIMARY KEY, sink TEXT NOT NULL, address TEXT NOT NULL,
    UNIQUE (sink, address));
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, record_id INTEGER NOT NULL REFERENCES records (id),
    dest_id INTEGER NOT NULL REFERENCES destinations (id), status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, remote_id TEXT, last_error TEXT,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX deliveries_head ON deliveries (dest_id, id)
    WHERE status IN ('pending', 'in_flight', 'retrying');
CREATE INDEX deliveries_status ON deliveries (status);
CREATE INDEX deliveries_by_record ON deliveries (record_id);
CREATE TABLE attempts (
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id), number INTEGER NOT NULL,
    started_at INTEGER NOT NULL, finished_at INTEGER, outcome TEXT, remote_id TEXT,
    PRIMARY KEY (delivery_id, number)) WITHOUT ROWID;
"""


def oracle_ts(seconds_x10):
    s, tenth = divmod(seconds_x10, 10)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(EPOCH + s)) + f".{tenth}00+00:00"


def invoice(i, centers):
    """Invoice i as the Oracle source maps it (fields + raw payload), as a dict."""
    ts = oracle_ts(i)
    amount = f"{100 + i % 9000}.{i % 100:02d}"
    supplier = SUPPLIERS[i % len(SUPPLIERS)]
    cc = f"CC-{i % centers:03d}"
    cents = int(amount.replace(".", ""))
    n_lines = 1 + i % 3
    lines, left = [], cents
    for n in range(1, n_lines + 1):
        line_cents = left if n == n_lines else cents * (n + 1) // (2 * n_lines + 3)
        left -= line_cents
        n_dists = 1 + (i + n) % 2
        dists, dleft = [], line_cents
        for d in range(1, n_dists + 1):
            dc = dleft if d == n_dists else line_cents * 7 // 10
            dleft -= dc
            dists.append({
                "InvoiceDistributionId": i * 100 + n * 10 + d,
                "DistributionLineNumber": d,
                "DistributionLineType": "Item",
                "DistributionAmount": dc / 100,
                "DistributionCombination":
                    f"01-{DEPARTMENTS[(i + d) % 4]}-{ACCOUNTS[n % 4]}-0000-000",
                "AccountingDate": "2026-01-15",
                "Description": LINE_TEXTS[(i + n) % 3],
            })
        lines.append({
            "LineNumber": n, "LineAmount": line_cents / 100, "LineType": "Item",
            "Description": LINE_TEXTS[(i + n) % 3],
            "DistributionCombination": f"01-000-{ACCOUNTS[n % 4]}-0000-000",
            "AccountingDate": "2026-01-15", "invoiceDistributions": dists,
        })
    raw = {
        "InvoiceId": i, "InvoiceNumber": f"INV-{i}", "InvoiceAmount": float(amount),
        "InvoiceCurrency": "USD", "PaymentCurrency": "USD", "InvoiceDate": "2026-01-15",
        "BusinessUnit": "US1 Business Unit", "Supplier": supplier,
        "SupplierNumber": f"S{1000 + i}", "InvoiceType": "Standard",
        "ValidationStatus": "Validated", "ApprovalStatus": "Approved",
        "Description": "Office supplies", "CreationDate": ts, "LastUpdateDate": ts,
        "invoiceLines": lines,
    }

    def line(n, what):
        return {"number": str(n), "description": what,
                "amount": {"amount": f"{10 * n}.00", "currency": "USD"},
                "gl_account": f"101.{cc}.7640.0000", "cost_center": cc}

    return {
        "system": "OracleFusion(bench)", "kind": "supplier_invoice", "key": str(i),
        "version": ts, "modified_at": ts,
        "fields": {
            "document_number": f"INV-{i:08d}", "supplier_id": str(300000 + i % 97),
            "supplier": supplier, "amount": {"amount": amount, "currency": "USD"},
            "cost_center": cc, "company_code": "101", "status": "Validated",
            "lines": [line(1, "Office supplies"), line(2, "Freight")],
        },
        "link": f"https://bench.example.com/fscmUI/faces/FuseWelcome?invoice={i}",
        "raw": raw,
    }


class CountingSink:
    """Counts and drops, like the Rust bench's CountingSink; returns a receipt id."""

    def __init__(self):
        self.count = 0

    def send(self, delivery_id, address, text):
        self.count += 1
        return f"c-{delivery_id}"


def render(record):
    f = record["fields"]
    return (f"Supplier invoice {f['document_number']} from {f['supplier']}: "
            f"{f['amount']['amount']} {f['amount']['currency']} ({record['link']})")


def now_ns():
    return time.time_ns()


def run(path, n, centers, minimal=False):
    db = sqlite3.connect(path, isolation_level=None)  # explicit BEGIN/COMMIT below
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    dest_ids = []
    for c in range(centers):
        cur = db.execute("INSERT INTO destinations (sink, address) VALUES ('count', ?)",
                         (f"#cc{c:03d}",))
        dest_ids.append(cur.lastrowid)
    sink = CountingSink()
    bodies = 0
    started = time.perf_counter()
    for first in range(0, n, PAGE):
        page = [invoice(i, centers) for i in range(first, min(first + PAGE, n))]
        # One transaction: the page's records, their planned deliveries, the position.
        db.execute("BEGIN IMMEDIATE")
        at = now_ns()
        for rec in page:
            body = json.dumps(rec, ensure_ascii=False, separators=(",", ":"))
            bodies += len(body.encode())
            cur = db.execute(
                "INSERT OR IGNORE INTO records (stream, dedupe_key, dedupe_version, record_key,"
                " journaled_at, body) VALUES ('invoices', ?, ?, ?, ?, ?)",
                (rec["key"], rec["version"], rec["key"], at, body))
            if cur.rowcount == 1:
                db.execute(
                    "INSERT INTO deliveries (record_id, dest_id, status, created_at, updated_at)"
                    " VALUES (?, ?, 'pending', ?, ?)",
                    (cur.lastrowid, dest_ids[int(rec["key"]) % centers], at, at))
        db.execute(
            "INSERT INTO positions (stream, position, updated_at) VALUES ('invoices', ?, ?)"
            " ON CONFLICT (stream) DO UPDATE SET position = excluded.position,"
            " updated_at = excluded.updated_at",
            (json.dumps({"after": first + len(page)}), at))
        db.execute("COMMIT")
        # Deliver what is pending, oldest first, one transaction before and one after each send.
        pending = db.execute(
            "SELECT d.id, d.record_id, dst.address FROM deliveries AS d"
            " JOIN destinations AS dst ON dst.id = d.dest_id"
            " WHERE d.status = 'pending' ORDER BY d.id LIMIT ?", (PAGE,)).fetchall()
        for delivery_id, record_id, address in pending:
            t = now_ns()
            db.execute("BEGIN IMMEDIATE")
            attempt = db.execute(
                "UPDATE deliveries SET status = 'in_flight', attempts = attempts + 1,"
                " updated_at = ? WHERE id = ? RETURNING attempts", (t, delivery_id)).fetchone()[0]
            if not minimal:
                db.execute(
                    "INSERT INTO attempts (delivery_id, number, started_at) VALUES (?, ?, ?)",
                    (delivery_id, attempt, t))
            db.execute("COMMIT")
            if minimal:
                text = f"record {record_id}"
            else:
                (body,) = db.execute("SELECT body FROM records WHERE id = ?",
                                     (record_id,)).fetchone()
                text = render(json.loads(body))
            receipt = sink.send(delivery_id, address, text)
            t = now_ns()
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE deliveries SET status = 'delivered', remote_id = ?, updated_at = ?"
                " WHERE id = ?", (receipt, t, delivery_id))
            if not minimal:
                db.execute(
                    "UPDATE attempts SET finished_at = ?, outcome = 'delivered', remote_id = ?"
                    " WHERE delivery_id = ? AND number = ?", (t, receipt, delivery_id, attempt))
            db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    delivered = db.execute(
        "SELECT count(*) FROM deliveries WHERE status = 'delivered'").fetchone()[0]
    db.close()
    if delivered != n or sink.count != n:
        raise SystemExit(f"expected {n} deliveries, got {delivered} (sink {sink.count})")
    return elapsed, bodies / max(n, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int, nargs="?", default=100_000, help="records (default 100000)")
    ap.add_argument("--destinations", type=int, default=1, help="destinations (default 1)")
    ap.add_argument("--machine", action="store_true", help="print records_per_second=<f> only")
    ap.add_argument("--minimal", action="store_true",
                    help="no attempt rows, no record read per delivery (the issue's bare loop)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ml-python-peer-") as d:
        elapsed, body = run(os.path.join(d, "journal.db"), args.n, max(args.destinations, 1),
                           args.minimal)
    rate = args.n / elapsed
    if args.machine:
        print(f"records_per_second={rate:.0f}")
    else:
        kind = "python peer (minimal)" if args.minimal else "python peer"
        print(f"{kind}: {args.n} records (pages of {PAGE}, {args.destinations} "
              f"destination(s), body ~{body:.0f} B) in {elapsed:.2f} s = {rate:.0f} records/s "
              f"(python {'.'.join(map(str, sys.version_info[:3]))}, "
              f"sqlite {sqlite3.sqlite_version})")


if __name__ == "__main__":
    main()
