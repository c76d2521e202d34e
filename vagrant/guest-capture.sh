#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# Run inside the VM as root (make vm-test does): record TCP with
# `pyelog -c tcp -o OUT` around loopback connections made in a network
# namespace of its own (--netns: only those), so the host can decode the
# capture with `pyelog -r`.
# Usage: guest-capture.sh OUT.elog
set -euo pipefail
out=${1:?usage: guest-capture.sh OUT.elog}
cd "$(dirname "$0")/.."
py=.venv/bin/python
ns=pyelog-vm-$$
rec=
cleanup() {
    [ -n "$rec" ] && kill "$rec" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    [ -n "${err:-}" ] && rm -f "$err"
}
trap cleanup EXIT

ip netns add "$ns"
ip -n "$ns" link set lo up
rm -f "$out"
err=$(mktemp)
# -p: the recorder's "[Providers]" line on stderr says its programs are
# attached (true even while other recorders run); --netns: only this
# namespace's connections.
$py -m pyelog.cli -p -s -c tcp --netns "$ns" -o "$out" 2>"$err" &
rec=$!
# bcc compiles first: seconds under KVM, about a minute under TCG.
for _ in $(seq 600); do
    grep -q '^\[Providers\]' "$err" && break
    kill -0 "$rec" 2>/dev/null || { cat "$err" >&2; echo "guest-capture: recorder exited early" >&2; exit 1; }
    sleep 0.5
done
grep -q '^\[Providers\]' "$err" || { cat "$err" >&2; echo "guest-capture: recorder never attached" >&2; exit 1; }

ip netns exec "$ns" "$py" - <<'PY'
import socket, threading
srv = socket.create_server(("127.0.0.1", 5201))
def serve(n):
    for _ in range(n):
        c, _ = srv.accept()
        while c.recv(65536):
            pass
        c.close()
t = threading.Thread(target=serve, args=(3,))
t.start()
for _ in range(3):
    with socket.create_connection(("127.0.0.1", 5201)) as c:
        c.sendall(b"x" * 65536)
t.join()
srv.close()
PY
sleep 1
kill -TERM "$rec"
wait "$rec"
rec=
cat "$err" >&2
rm -f "$err"
ls -l "$out"
