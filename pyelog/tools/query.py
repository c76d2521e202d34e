# SPDX-License-Identifier: BSD-2-Clause
"""pyelog query: SQL (DuckDB, embedded) over an exported dataset or over captures.

Every table of the dataset is a view named ``<provider>_<event>`` in lower
case (``tcp_out``, ``tcp_state_change``, ``tcp_unknown_events``), with the
Hive partitions ``host`` and ``day`` as columns. Ready-made TCP views:

  connections      one row per TCP session of each capture: what
                   ``pyelog summary --listeners --json`` prints (the same
                   columns and numbers), plus host, capture, listener and
                   first_record (the capture's order)
  tcp_conns        one row per connection: host, capture, session_id,
                   family, laddr, lport, raddr, rport (from CONN_SET_IP_*)
  retransmissions  per connection: retransmitted segments (RETRANSMIT with
                   err 0, counted by segments as ``pyelog summary`` does),
                   RETRANSMIT events, first and last
  resets           one row per reset sent or received, with the connection
  rtt              per connection: RTT samples (RTT_SAMPLE rtt_us, RTT rtt
                   and min_rtt; zeros left out): count, min, p50, p90, p99, max
  rtt_by_host      the same per host
  host_report      per host: connections, retransmitted segments,
                   connections that retransmitted, RTT samples and their
                   p50/p90/p99 (what pyelog/tools/sparkjob.py computes in Spark)

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
              "RTT_SAMPLE", "RTT", "SESSION_CREATE", "SESSION_END", "CONN_OWNER", "CONN_PARAMS",
              "CONN_PARAMS_REPLAY", "OUT", "IN", "IN_PROBE", "STATE_CHANGE", "RTO", "RCV_SPACE")
SESSION_ID_NONE = 0xFFFF_FFFF_FFFF_FFFF
DUMP_COMPLETE_ID = 0xFFFF_FFFD

# pyelog summary's fold (pyelog/tools/summary.py, TcpSession), in SQL: one
# row per TCP session of each capture, the same numbers. Sequence numbers
# are compared as summary compares them (seq_diff: 32-bit, signed); a
# running "latest" (seq_later) is the maximum of the values unwrapped
# along the session's records (each one's difference from the previous
# added up), which is the same while consecutive values are less than
# 2 GiB apart, as TCP's are. {out_size}/{in_size}: the OUT/IN layouts
# with the kernel-state fields (shorter payloads are older layouts).
CONNECTIONS = """
CREATE MACRO seq_diff(a, b) AS
  (((a::BIGINT - b::BIGINT) % 4294967296 + 4294967296 + 2147483648) % 4294967296 - 2147483648);
CREATE MACRO seq_add(a, n) AS ((a::BIGINT + n::BIGINT) % 4294967296);
-- seq_later along a session: xs, its 32-bit values {{x, r: record}} in record
-- order, unwrapped (each one's difference from the one before added up);
-- top: the highest unwrapped (mod 2^32: the latest value), r: the last
-- record that reached it. NULL for an empty or NULL list.
CREATE MACRO seq_latest(xs) AS CASE WHEN len(xs) > 0 THEN
  list_reduce(xs[2:], lambda a, e: {{'prev': e.x::BIGINT, 'u': a.u + seq_diff(e.x, a.prev),
                                     'top': greatest(a.top, a.u + seq_diff(e.x, a.prev)),
                                     'r': CASE WHEN a.u + seq_diff(e.x, a.prev) >= a.top THEN e.r ELSE a.r END}},
              {{'prev': xs[1].x::BIGINT, 'u': xs[1].x::BIGINT, 'top': xs[1].x::BIGINT, 'r': xs[1].r}}) END;

CREATE VIEW tcp_fin AS
  SELECT host, capture, session_id, record FROM tcp_in WHERE flags & 1 <> 0
  UNION ALL
  SELECT host, capture, session_id, record FROM tcp_state_change
  WHERE coalesce(new_state_name, new_state::VARCHAR) IN ('CLOSE_WAIT', 'LAST_ACK', 'CLOSING', 'TIME_WAIT');

CREATE VIEW tcp_rtt_figures AS
  SELECT host, capture, session_id, rtt_us AS us, 'sample' AS kind FROM tcp_rtt_sample WHERE rtt_us > 0
  UNION ALL SELECT host, capture, session_id, srtt_us, 'smoothed' FROM tcp_rtt_sample WHERE srtt_us > 0
  UNION ALL SELECT host, capture, session_id, rtt, 'sample' FROM tcp_rtt WHERE rtt > 0
  UNION ALL SELECT host, capture, session_id, min_rtt, 'sample' FROM tcp_rtt WHERE min_rtt > 0
  UNION ALL SELECT host, capture, session_id, srtt, 'smoothed' FROM tcp_rtt WHERE srtt > 0
  UNION ALL SELECT host, capture, session_id, srtt_us, 'smoothed' FROM tcp_rto WHERE srtt_us > 0
  UNION ALL SELECT host, capture, session_id, srtt_us, 'smoothed' FROM tcp_in_probe WHERE srtt_us > 0
  UNION ALL SELECT host, capture, session_id, rtt_us, 'smoothed' FROM tcp_rcv_space WHERE rtt_us > 0;

CREATE VIEW connections AS
WITH
dumps AS (SELECT host, capture, min(record) AS record FROM tcp_unknown_events
          WHERE event_id = {dump_complete} GROUP BY ALL),
sess AS (SELECT host, capture, session_id, min(record) AS first_record,
                min(boot_us) AS start_us, max(boot_us) AS end_us
         FROM tcp_session_records GROUP BY ALL),
owner AS (SELECT host, capture, session_id,
                 arg_max(pid, record) FILTER (WHERE pid <> 0) AS pid,
                 arg_max(comm, record) FILTER (WHERE comm <> '') AS comm
          FROM (SELECT host, capture, session_id, record, pid, comm::VARCHAR AS comm FROM tcp_session_create
                UNION ALL
                SELECT host, capture, session_id, record, pid, comm::VARCHAR FROM tcp_conn_owner)
          GROUP BY ALL),
ip AS (SELECT host, capture, session_id, arg_min(family, record) AS family, arg_min(laddr, record) AS laddr,
              arg_min(lport, record) AS lport, arg_min(raddr, record) AS raddr, arg_min(rport, record) AS rport
       FROM (SELECT host, capture, session_id, record, 4 AS family, src_addr::VARCHAR AS laddr,
                    src_port AS lport, dst_addr::VARCHAR AS raddr, dst_port AS rport FROM tcp_conn_set_ip_v4
             UNION ALL
             SELECT host, capture, session_id, record, 6, src_addr::VARCHAR, src_port, dst_addr::VARCHAR,
                    dst_port FROM tcp_conn_set_ip_v6)
       GROUP BY ALL),
params AS (SELECT host, capture, session_id, arg_max(iss, record) AS iss, arg_max(irs, record) AS irs
           FROM tcp_conn_params GROUP BY ALL),
replay AS (SELECT DISTINCT host, capture, session_id FROM tcp_conn_params_replay),
ended AS (SELECT DISTINCT host, capture, session_id FROM tcp_session_end),
state AS (SELECT host, capture, session_id,
                 arg_max(coalesce(new_state_name, new_state::VARCHAR), record) AS state
          FROM tcp_state_change GROUP BY ALL),
outs AS (SELECT host, capture, session_id, count(*) AS segs_out, sum(len)::BIGINT AS out_len_sum,
                arg_min(CASE WHEN flags & 2 <> 0 THEN seq_add(seq, 1)
                             WHEN length >= {out_size} AND seq_diff(seq, snd_una) > 0 THEN snd_una
                             ELSE seq END, record) AS snd_base,
                seq_latest(list({{'x': seq_add(seq, len), 'r': record}} ORDER BY record) FILTER (WHERE len > 0))
                  AS sent,
                seq_latest(list({{'x': ack, 'r': record}} ORDER BY record) FILTER (WHERE flags & 16 <> 0))
                  AS acked
         FROM tcp_out GROUP BY ALL),
rbase AS (SELECT host, capture, session_id, arg_min(v, record) AS rcv_base
          FROM (SELECT host, capture, session_id, record, ack AS v FROM tcp_out WHERE flags & 16 <> 0
                UNION ALL
                SELECT host, capture, session_id, record, rcv_nxt FROM tcp_in WHERE length >= {in_size})
          GROUP BY ALL),
ins AS (SELECT host, capture, session_id, count(*) AS segs_in,
               seq_latest(list({{'x': seq_add(seq, len), 'r': record}} ORDER BY record)
                          FILTER (WHERE length >= {in_size} AND len > 0 AND seq_diff(seq, rcv_nxt) <= 0))
                 AS in_order
        FROM tcp_in GROUP BY ALL),
probes AS (SELECT host, capture, session_id, count(*) AS probes, sum(len)::BIGINT AS probe_len_sum
           FROM tcp_in_probe GROUP BY ALL),
retrans AS (SELECT host, capture, session_id, sum(greatest(segs, 1))::BIGINT AS retransmits
            FROM tcp_retransmit WHERE err = 0 GROUP BY ALL),
rtt AS (SELECT host, capture, session_id, min(us) AS rtt_min_us, max(us) AS rtt_max_us,
               coalesce(min(us) FILTER (WHERE kind = 'sample') = min(us), false) AS min_sampled,
               coalesce(max(us) FILTER (WHERE kind = 'sample') = max(us), false) AS max_sampled
        FROM tcp_rtt_figures GROUP BY ALL),
folded AS (
  SELECT s.host, s.capture, s.session_id, s.first_record, s.start_us, s.end_us,
         coalesce(o.pid, 0) AS pid, coalesce(o.comm, '') AS comm, coalesce(ip.family, 4) AS family,
         coalesce(ip.laddr, '') AS laddr, coalesce(ip.lport, 0) AS lport,
         coalesce(ip.raddr, '') AS raddr, coalesce(ip.rport, 0) AS rport,
         e.session_id IS NOT NULL AS ended,
         r.session_id IS NOT NULL OR coalesce(s.first_record < d.record, false) AS preexisting,
         coalesce(outs.segs_out, 0) AS segs_out,
         CASE WHEN coalesce(ins.segs_in, 0) = 0 THEN coalesce(pr.probes, 0) ELSE ins.segs_in END AS segs_in,
         coalesce(rt.retransmits, 0) AS retransmits,
         rtt.rtt_min_us, rtt.rtt_max_us,
         CASE WHEN rtt.rtt_min_us IS NULL THEN '' WHEN rtt.min_sampled THEN 'sample' ELSE 'smoothed' END
           AS rtt_min_src,
         CASE WHEN rtt.rtt_max_us IS NULL THEN '' WHEN rtt.max_sampled THEN 'sample' ELSE 'smoothed' END
           AS rtt_max_src,
         coalesce(st.state, CASE WHEN e.session_id IS NOT NULL THEN 'CLOSED' ELSE '' END) AS state,
         CASE WHEN p.iss IS NOT NULL THEN seq_add(p.iss, 1) ELSE outs.snd_base END AS base,
         outs.sent.top % 4294967296 AS snd_max, coalesce(outs.out_len_sum, 0) AS out_len_sum,
         CASE WHEN p.irs IS NOT NULL THEN seq_add(p.irs, 1) ELSE rb.rcv_base END AS rbase,
         outs.acked.top % 4294967296 AS max_ack,
         EXISTS (SELECT 1 FROM tcp_fin f WHERE f.host = s.host AND f.capture = s.capture
                 AND f.session_id = s.session_id AND f.record < outs.acked.r) AS after_fin,
         ins.in_order.top % 4294967296 AS max_in_order, coalesce(pr.probe_len_sum, 0) AS probe_len_sum
  FROM sess s
  LEFT JOIN owner o USING (host, capture, session_id)
  LEFT JOIN ip USING (host, capture, session_id)
  LEFT JOIN params p USING (host, capture, session_id)
  LEFT JOIN replay r USING (host, capture, session_id)
  LEFT JOIN ended e USING (host, capture, session_id)
  LEFT JOIN state st USING (host, capture, session_id)
  LEFT JOIN outs USING (host, capture, session_id)
  LEFT JOIN rbase rb USING (host, capture, session_id)
  LEFT JOIN ins USING (host, capture, session_id)
  LEFT JOIN probes pr USING (host, capture, session_id)
  LEFT JOIN retrans rt USING (host, capture, session_id)
  LEFT JOIN rtt USING (host, capture, session_id)
  LEFT JOIN dumps d USING (host, capture))
SELECT host, capture, session_id, pid, comm, family, laddr, lport, raddr, rport, start_us, end_us,
       round((end_us - start_us) / 1000, 3) AS duration_ms, ended, preexisting,
       CASE WHEN base IS NOT NULL AND snd_max IS NOT NULL THEN greatest(0, seq_diff(snd_max, base))
            ELSE out_len_sum END AS bytes_sent,
       CASE WHEN rbase IS NOT NULL AND (max_ack IS NOT NULL OR max_in_order IS NOT NULL) THEN
              greatest(0, greatest(
                CASE WHEN max_ack IS NULL THEN 0
                     WHEN after_fin AND seq_diff(max_ack, rbase) > 0 THEN seq_diff(max_ack, rbase) - 1
                     ELSE seq_diff(max_ack, rbase) END,
                CASE WHEN max_in_order IS NULL THEN -2147483648 ELSE seq_diff(max_in_order, rbase) END))
            ELSE probe_len_sum END AS bytes_received,
       segs_out, segs_in, retransmits, rtt_min_us, rtt_max_us, rtt_min_src, rtt_max_src, state,
       rport = 0 AND raddr IN ('0.0.0.0', '::') AS listener, first_record
FROM folded;
"""

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

CREATE VIEW host_report AS
  WITH conns AS (SELECT host, count(DISTINCT (capture, session_id)) AS connections FROM tcp_conns GROUP BY host),
  re AS (SELECT host, sum(greatest(segs, 1))::BIGINT AS retransmitted_segments,
                count(DISTINCT (capture, session_id)) AS connections_retransmitting
         FROM tcp_retransmit WHERE err = 0 GROUP BY host),
  r AS (SELECT host, count(*) AS rtt_samples, quantile_cont(us, 0.5) AS rtt_p50_us,
               quantile_cont(us, 0.9) AS rtt_p90_us, quantile_cont(us, 0.99) AS rtt_p99_us
        FROM tcp_rtt_samples GROUP BY host)
  SELECT host, coalesce(connections, 0) AS connections,
         coalesce(retransmitted_segments, 0) AS retransmitted_segments,
         coalesce(connections_retransmitting, 0) AS connections_retransmitting,
         coalesce(rtt_samples, 0) AS rtt_samples, rtt_p50_us, rtt_p90_us, rtt_p99_us
  FROM conns FULL JOIN re USING (host) FULL JOIN r USING (host);

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

    from pyelog.tools.columns import COMMON, UNKNOWN, UNKNOWN_COLUMNS, EventTable
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
    place = [("capture", pa.string()), ("host", pa.string()), ("day", pa.date32())]
    for event in TCP_TABLES:
        name = view_name("tcp", event)
        if name not in present:
            ev = consumer.schema_event(consumer.event_id(event))
            con.register(name, pa.schema(list(EventTable(consumer, ev).schema) + place).empty_table())
    unknown = view_name("tcp", UNKNOWN)
    if unknown not in present:
        con.register(unknown, pa.schema(list(COMMON) + UNKNOWN_COLUMNS + place).empty_table())
    con.execute(TCP_VIEWS)
    tables = sorted(present | {view_name("tcp", e) for e in TCP_TABLES}
                    | {unknown}) if present else []
    records = " UNION ALL ".join(
        f'SELECT host, capture, session_id, record, boot_us FROM "{t}"' for t in tables
        if t.startswith("tcp_")) or "SELECT NULL::VARCHAR host, NULL::VARCHAR capture, 0::UBIGINT session_id, " \
                                    "0::UBIGINT record, 0::UBIGINT boot_us WHERE false"
    con.execute(f"CREATE VIEW tcp_session_records AS SELECT * FROM ({records}) WHERE session_id <> "
                f"{SESSION_ID_NONE}::UBIGINT")
    con.execute(CONNECTIONS.format(out_size=consumer.payload_size("OUT"),
                                   in_size=consumer.payload_size("IN"), dump_complete=DUMP_COMPLETE_ID))
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
        try:
            con = connect(root, decoder)
        except duckdb.Error as e:
            raise ToolError(f"{root}: not a dataset this pyelog reads ({str(e).splitlines()[0]})") from None
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
