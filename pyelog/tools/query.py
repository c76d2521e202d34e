# SPDX-License-Identifier: BSD-2-Clause
"""pyelog query: SQL (DuckDB, embedded) over an exported dataset or over captures.

Every table of the dataset is a view named ``<provider>_<event>`` in lower
case (``tcp_out``, ``tcp_state_change``, ``tcp_unknown_events``), with the
Hive partitions ``host`` and ``day`` as columns. Ready-made TCP views:

  tcp_conns        one row per connection: host, capture, session_id,
                   family, laddr, lport, raddr, rport (from CONN_SET_IP_*)
  retransmissions  per connection: retransmitted segments (RETRANSMIT with
                   err 0, counted by segments as ``pyelog summary`` does),
                   RETRANSMIT events, first and last
  resets           one row per reset sent or received, with the connection
  rtt              per connection: RTT samples (RTT_SAMPLE rtt_us, RTT rtt
                   and min_rtt; zeros left out): count, min, p50, p90, p99, max
  rtt_by_host      the same per host

Captures given instead of a dataset are exported to a temporary one first
(``pyelog export``; ``--host`` names their host).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import sys
import tempfile
from pathlib import Path

from pyelog.records.untrusted import terminal_safe
from pyelog.schema.consumer import ConsumerSet
from pyelog.tools.command import ArgumentParser, ToolError, add_schema_option, run_reporting

# The TCP tables the ready-made views read (empty stand-ins when the
# dataset has none: a capture at INFO has no RTT_SAMPLE).
TCP_TABLES = ("CONN_SET_IP_V4", "CONN_SET_IP_V6", "RETRANSMIT", "RESET_RECEIVED", "RESET_SENT",
              "RTT_SAMPLE", "RTT")

TCP_VIEWS = """
CREATE VIEW tcp_conns AS
  SELECT host, capture, session_id, 4 AS family, src_addr AS laddr, src_port AS lport,
         dst_addr AS raddr, dst_port AS rport FROM tcp_conn_set_ip_v4
  UNION ALL
  SELECT host, capture, session_id, 6, src_addr, src_port, dst_addr, dst_port FROM tcp_conn_set_ip_v6;

CREATE VIEW retransmissions AS
  SELECT r.host, r.capture, r.session_id, any_value(c.laddr) AS laddr, any_value(c.lport) AS lport,
         any_value(c.raddr) AS raddr, any_value(c.rport) AS rport,
         sum(greatest(r.segs, 1))::BIGINT AS retransmitted_segments, count(*) AS events,
         min(r.ts) AS first, max(r.ts) AS last
  FROM tcp_retransmit r LEFT JOIN tcp_conns c USING (host, capture, session_id)
  WHERE r.err = 0
  GROUP BY r.host, r.capture, r.session_id;

CREATE VIEW resets AS
  SELECT x.ts, x.host, x.capture, x.session_id, x.direction, x.state, c.laddr, c.lport, c.raddr, c.rport
  FROM (SELECT ts, host, capture, session_id, 'received' AS direction, state_name AS state
          FROM tcp_reset_received
        UNION ALL
        SELECT ts, host, capture, session_id, 'sent', state_name FROM tcp_reset_sent) x
  LEFT JOIN tcp_conns c USING (host, capture, session_id);

CREATE VIEW tcp_rtt_samples AS
  SELECT host, capture, session_id, rtt_us AS us FROM tcp_rtt_sample WHERE rtt_us > 0
  UNION ALL SELECT host, capture, session_id, rtt FROM tcp_rtt WHERE rtt > 0
  UNION ALL SELECT host, capture, session_id, min_rtt FROM tcp_rtt WHERE min_rtt > 0;

CREATE VIEW rtt AS
  SELECT s.host, s.capture, s.session_id, any_value(c.laddr) AS laddr, any_value(c.lport) AS lport,
         any_value(c.raddr) AS raddr, any_value(c.rport) AS rport, count(*) AS samples,
         min(us) AS min_us, quantile_cont(us, 0.5) AS p50_us, quantile_cont(us, 0.9) AS p90_us,
         quantile_cont(us, 0.99) AS p99_us, max(us) AS max_us
  FROM tcp_rtt_samples s LEFT JOIN tcp_conns c USING (host, capture, session_id)
  GROUP BY s.host, s.capture, s.session_id;

CREATE VIEW rtt_by_host AS
  SELECT host, count(DISTINCT (capture, session_id)) AS connections, count(*) AS samples,
         min(us) AS min_us, quantile_cont(us, 0.5) AS p50_us, quantile_cont(us, 0.9) AS p90_us,
         quantile_cont(us, 0.99) AS p99_us, max(us) AS max_us
  FROM tcp_rtt_samples GROUP BY host;
"""


def view_name(provider: str, table: str) -> str:
    """The SQL name of a dataset table: ``<provider>_<event>``, lower case, ``-`` as ``_``."""
    return f"{provider}_{table}".lower().replace("-", "_")


def connect(dataset: str | os.PathLike, decoder=None):
    """A DuckDB connection with the dataset's tables and the ready-made views."""
    import duckdb

    from pyelog.tools.columns import EventTable
    root = Path(dataset)
    con = duckdb.connect()
    present = set()
    for provider in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        for table in sorted(t for t in provider.iterdir() if t.is_dir()):
            glob = str(table / "*" / "*" / "*.parquet").replace("'", "''")
            name = view_name(provider.name, table.name)
            con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet(\'{glob}\', '
                        "hive_partitioning = true, union_by_name = true)")
            present.add(name)
    consumer = (decoder or ConsumerSet.default()).get("tcp")
    if consumer is None:
        return con
    import pyarrow as pa
    for event in TCP_TABLES:
        name = view_name("tcp", event)
        if name not in present:
            ev = consumer.schema_event(consumer.event_id(event))
            schema = EventTable(consumer, ev).schema
            empty = pa.schema(list(schema) + [("capture", pa.string()), ("host", pa.string()),
                                              ("day", pa.date32())]).empty_table()
            con.register(name, empty)
    con.execute(TCP_VIEWS)
    return con


def format_table(columns: list[str], rows: list[tuple]) -> str:
    """Rows as aligned text: numbers to the right, NULL as ``-``."""
    def cell(v) -> str:
        return "-" if v is None else terminal_safe(str(v))
    text = [columns] + [[cell(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(columns))]
    numeric = [bool(rows) and all(isinstance(r[i], (int, float)) or r[i] is None for r in rows)
               for i in range(len(columns))]
    return "\n".join("  ".join(c.rjust(w) if num else c.ljust(w)
                               for c, w, num in zip(r, widths, numeric)).rstrip() for r in text)


def main(argv: list[str]) -> int:
    """``pyelog query``: parse ``argv``, run the SQL, print the result; the exit status."""
    p = ArgumentParser(prog="pyelog query", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=__doc__.split("\n\n", 1)[1])
    p.add_argument("sql", metavar="SQL", help="a DuckDB query over the views")
    p.add_argument("inputs", nargs="+", metavar="DATASET|CAPTURE",
                   help="a dataset directory (pyelog export -o DIR), or captures / directories of them")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true", help="CSV with a header line")
    out.add_argument("--json", action="store_true", help="one JSON object per row")
    p.add_argument("--host", default=socket.gethostname(),
                   help="for captures: the host they came from (default: this machine's name)")
    add_schema_option(p)
    a = p.parse_args(argv)
    return run_reporting("pyelog query", lambda: _query(a))


def _is_dataset(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "_captures"))


def _query(a: argparse.Namespace) -> int:
    try:
        import duckdb
    except ImportError:
        raise ToolError("query needs duckdb and pyarrow (pip install 'pyelog[fleet]')") from None
    decoder = ConsumerSet.with_extra(a.schema)
    datasets = [i for i in a.inputs if _is_dataset(i)]
    if datasets and len(datasets) != len(a.inputs) or len(datasets) > 1:
        raise ToolError("give one dataset directory, or captures")
    with tempfile.TemporaryDirectory(prefix="pyelog-query-") as tmp:
        if datasets:
            root = datasets[0]
        else:
            from pyelog.tools.export import Exporter, capture_files
            root = os.path.join(tmp, "dataset")
            exporter = Exporter(root, a.host, decoder)
            for path in capture_files(a.inputs):
                exporter.export(path)
        con = connect(root, decoder)
        try:
            cur = con.execute(a.sql)
        except duckdb.Error as e:
            raise ToolError(f"SQL: {str(e).splitlines()[0]}") from None
        columns = [d[0] for d in cur.description] if cur.description else []
        rows = cur.fetchall()
    if a.csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(columns)
        w.writerows(rows)
    elif a.json:
        for r in rows:
            print(json.dumps(dict(zip(columns, r)), default=str))
    elif columns:
        print(format_table(columns, rows))
    return 0
