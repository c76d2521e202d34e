# SPDX-License-Identifier: BSD-2-Clause
"""The fleet report in Spark: per host, retransmissions and RTT, from a ``pyelog export`` dataset.

Run it where the dataset is (a directory, or any path Spark reads: HDFS,
S3 with the cluster's connectors)::

    spark-submit pyelog/tools/sparkjob.py /data/fleet [--csv OUT_DIR]
    python -m pyelog.tools.sparkjob /data/fleet          # pyspark installed, local mode

One row per host, as ``pyelog query "SELECT * FROM host_report" DIR`` gives
it in DuckDB: ``connections`` (TCP connections with an address event),
``retransmitted_segments`` (RETRANSMIT with err 0, by segments),
``connections_retransmitting``, ``rtt_samples`` (RTT_SAMPLE rtt_us, RTT rtt
and min_rtt; zeros left out) and their ``rtt_p50_us``/``p90``/``p99``
(exact percentiles, linear between ranks). The job reads only the tables it
needs, with Spark's partition discovery (``host=``, ``day=``); it needs
pyspark, not pyelog.
"""
from __future__ import annotations

import argparse
import os
import sys

REPORT_COLUMNS = ("host", "connections", "retransmitted_segments", "connections_retransmitting",
                  "rtt_samples", "rtt_p50_us", "rtt_p90_us", "rtt_p99_us")


def _table(spark, dataset: str, provider: str, event: str, columns: list[str]):
    """One dataset table with ``host`` (None when the dataset has none of it)."""
    path = os.path.join(dataset, provider, event)
    if not os.path.isdir(path) and "://" not in dataset:
        return None
    return spark.read.option("basePath", path).parquet(path).select("host", *columns)


def report(spark, dataset: str):
    """The per-host report as a Spark DataFrame (columns :data:`REPORT_COLUMNS`)."""
    from pyspark.sql import functions as F

    def union(frames):
        frames = [f for f in frames if f is not None]
        out = None
        for f in frames:
            out = f if out is None else out.unionByName(f)
        return out

    conns = union([_table(spark, dataset, "tcp", e, ["capture", "session_id"])
                   for e in ("CONN_SET_IP_V4", "CONN_SET_IP_V6")])
    retrans = _table(spark, dataset, "tcp", "RETRANSMIT", ["capture", "session_id", "segs", "err"])
    sample = _table(spark, dataset, "tcp", "RTT_SAMPLE", ["rtt_us"])
    rtt = _table(spark, dataset, "tcp", "RTT", ["rtt", "min_rtt"])
    samples = union([sample.select("host", F.col("rtt_us").cast("long").alias("us")) if sample else None,
                     rtt.select("host", F.col("rtt").cast("long").alias("us")) if rtt else None,
                     rtt.select("host", F.col("min_rtt").cast("long").alias("us")) if rtt else None])

    parts = []
    if conns is not None:
        parts.append(conns.groupBy("host").agg(
            F.countDistinct("capture", "session_id").alias("connections")))
    if retrans is not None:
        parts.append(retrans.where(F.col("err") == 0).groupBy("host").agg(
            F.sum(F.greatest(F.col("segs").cast("long"), F.lit(1))).alias("retransmitted_segments"),
            F.countDistinct("capture", "session_id").alias("connections_retransmitting")))
    if samples is not None:
        parts.append(samples.where(F.col("us") > 0).groupBy("host").agg(
            F.count("*").alias("rtt_samples"),
            F.percentile("us", F.lit(0.5)).alias("rtt_p50_us"),
            F.percentile("us", F.lit(0.9)).alias("rtt_p90_us"),
            F.percentile("us", F.lit(0.99)).alias("rtt_p99_us")))
    if not parts:
        raise SystemExit(f"{dataset}: no TCP tables (is it a pyelog export dataset?)")
    out = parts[0]
    for p in parts[1:]:
        out = out.join(p, "host", "full")
    for c in REPORT_COLUMNS[1:]:
        if c not in out.columns:
            out = out.withColumn(c, F.lit(None).cast("double" if c.endswith("_us") else "long"))
    counts = ["connections", "retransmitted_segments", "connections_retransmitting", "rtt_samples"]
    return out.fillna(0, subset=counts).select(*REPORT_COLUMNS).orderBy("host")


def main(argv: list[str] | None = None) -> int:
    """Run the report; print it (or write CSV to a directory)."""
    p = argparse.ArgumentParser(prog="sparkjob", description=__doc__.splitlines()[0])
    p.add_argument("dataset", help="the dataset directory (pyelog export -o DIR)")
    p.add_argument("--csv", metavar="OUT_DIR", help="write the report as CSV (Spark's directory of parts)")
    a = p.parse_args(argv)
    from pyspark.sql import SparkSession
    spark = SparkSession.builder.appName("pyelog fleet report").getOrCreate()
    try:
        df = report(spark, a.dataset)
        if a.csv:
            df.coalesce(1).write.mode("overwrite").option("header", True).csv(a.csv)
        else:
            df.show(truncate=False, n=1 << 20)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
