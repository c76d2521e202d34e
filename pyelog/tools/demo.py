# SPDX-License-Identifier: BSD-2-Clause
"""``make demo``: record a small TCP workload with the TCP provider and show it.

Starts ``pyelog -c tcp -o demo.elog`` in the background, runs a few
loopback connections inside a network namespace of its own (nothing leaves
the machine), stops the recorder with SIGTERM and prints the first events of
the capture as elog(1) text, then ``pyelog summary`` of it (one row per
connection).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

from pyroute2 import NetNS, netns


def _workload(ns_name: str, connections: int = 5, size: int = 64 * 1024) -> None:
    netns.pushns(ns_name)
    try:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 5201))
        srv.listen()
        clients = [socket.socket() for _ in range(connections)]
    finally:
        netns.popns()

    def serve():
        for _ in range(connections):
            conn, _ = srv.accept()
            while conn.recv(65536):
                pass
            conn.close()

    t = threading.Thread(target=serve)
    t.start()
    for c in clients:
        c.connect(("127.0.0.1", 5201))
        c.sendall(b"d" * size)
        c.close()
        time.sleep(0.1)
    t.join()
    srv.close()


def main(output: str = "demo.elog") -> int:
    ns_name = f"pyelog-demo-{uuid.uuid4().hex[:6]}"
    netns.create(ns_name)
    try:
        with NetNS(ns_name) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        # -p: the provider line on stderr says the recorder is attached
        # (more reliable than looking for its link among everybody's).
        # --netns: only the demo's own connections, not the rest of the machine's.
        rec = subprocess.Popen([sys.executable, "-m", "pyelog.cli", "-p", "-s", "-c", "tcp",
                                "--netns", ns_name, "-o", output], stderr=subprocess.PIPE, text=True)
        for line in rec.stderr:
            sys.stderr.write(line)
            if line.startswith("[Providers]"):
                break
        else:
            return rec.wait() or 1
        threading.Thread(target=lambda: sys.stderr.writelines(rec.stderr), daemon=True).start()
        _workload(ns_name)
        time.sleep(0.5)
        rec.send_signal(signal.SIGTERM)
        if rec.wait(30) != 0:
            return 1
    finally:
        netns.remove(ns_name)
    print(f"\n== first events of {output} (pyelog -r {output} -e) ==")
    text = subprocess.run([sys.executable, "-m", "pyelog.cli", "-r", output, "-e"],
                          capture_output=True, text=True)
    lines = text.stdout.splitlines()
    print("\n".join(lines[:40]))
    print(f"... {len(lines)} events in {output} ({os.path.getsize(output)} bytes)")
    print(f"\n== connections (pyelog summary {output}) ==")
    summary = subprocess.run([sys.executable, "-m", "pyelog.cli", "summary", output])
    return text.returncode or summary.returncode


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
