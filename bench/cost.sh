#!/usr/bin/env bash
# bench/cost.sh — what tether's warm pool (min_idle) and per-member reuse
# counters (ReuseStats) cost its http request path. Issue 7's bound: at most
# 3% fewer requests per proxy CPU-second than the same run without them.
#
# Two tethers, the same http virtual server otherwise (reuse "shared", member
# max_connections and max_idle 64, no access log, no X-Forwarded-*), in front
# of an nginx backend returning a 64-byte body, as bench/compare.sh section 4
# sets them up:
#   with:     tether as built, min_idle = 8
#   without:  tether built with -tags tether_nocounters (counters compiled
#             out), min_idle = 0 (no warm pool)
# Load: wrk -c 50 -t 2, HTTP_SECS each, (a) keepalive clients, (b)
# "Connection: close" clients. ROUNDS rounds, the order of with/without
# alternating per round; each run starts a fresh tether (cold pool). The
# proxy runs alone on CPU 0 with GOMAXPROCS=1; nginx and wrk share CPU 1.
# Reported: the median over the rounds of requests/s and requests per proxy
# CPU-second (utime+stime of the tether process), and with/without ratios.
#
# Usage (from the repo root):  bash bench/cost.sh
# Environment: ROUNDS (default 3), HTTP_SECS (default 5), KEEP_TMP=1.
# Needs go, nginx, wrk, taskset, python3, ss.
set -euo pipefail

ROUNDS=${ROUNDS:-3} HTTP_SECS=${HTTP_SECS:-5}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for p in go nginx wrk taskset python3 ss; do
	command -v "$p" >/dev/null || { echo "cost.sh: missing $p (apt-get install -y nginx wrk util-linux python3 iproute2)" >&2; exit 1; }
done
log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tether-cost.XXXXXX")
PIDS=()
cleanup() {
	local rc=$? pid
	trap - EXIT
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	sleep 0.3
	for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	pkill -KILL -f "nginx -p $tmp/" 2>/dev/null || true
	wait 2>/dev/null || true
	[[ ${KEEP_TMP:-0} == 1 ]] && echo "temp dir kept: $tmp" >&2 || rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { python3 -c 'import sys; f=open("/proc/%s/stat"%sys.argv[1]).read().rsplit(")",1)[1].split(); print(int(f[11])+int(f[12]))' "$1"; }
wait_port() { # PORT: listening within 10 s
	local i
	for i in $(seq 100); do [[ -n $(ss -Hltn "sport = :$1") ]] && return 0; sleep 0.1; done
	echo "cost.sh: nothing listens on :$1" >&2
	return 1
}

log "building tether (with counters) and tether-bare (-tags tether_nocounters)"
go build -o "$tmp/tether" ./cmd/tether
go build -tags tether_nocounters -o "$tmp/tether-bare" ./cmd/tether

BACK=$(free_port)
mkdir -p "$tmp/nginx/logs"
chmod 755 "$tmp"
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
error_log $tmp/nginx/error.log warn;
pid $tmp/nginx/nginx.pid;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx/tmp-body;
    proxy_temp_path $tmp/nginx/tmp-proxy;
    fastcgi_temp_path $tmp/nginx/tmp-fastcgi;
    uwsgi_temp_path $tmp/nginx/tmp-uwsgi;
    scgi_temp_path $tmp/nginx/tmp-scgi;
    keepalive_timeout 60s;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$BACK backlog=4096;
        location / { default_type text/plain; return 200 "tether-bench-64-byte-body-0123456789-abcdefghijklmnopqrstuvwxyz."; }
    }
}
EOF
taskset -c 1 nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' >"$tmp/nginx.log" 2>&1 &
PIDS+=($!)
wait_port "$BACK"

# run VARIANT SCEN ROUND: one fresh tether, one wrk run; appends
# "variant scen round rps cpu_s errors" to $tmp/results.
run() {
	local variant=$1 scen=$2 round=$3 bin=$tmp/tether min_idle=8 front pid t0 t1 hdr=() out
	[[ $variant == without ]] && bin=$tmp/tether-bare min_idle=0
	[[ $scen == close ]] && hdr=(-H "Connection: close")
	front=$(free_port)
	cat >"$tmp/$variant.toml" <<EOF
[global]
shutdown_timeout = "2s"

[log]
level = "warn"
access = false

[pool.p]
reuse = "shared"
max_idle = 64
min_idle = $min_idle
members = [ { address = "127.0.0.1:$BACK", max_connections = 64 } ]

[pool.p.health]
type = "none"

[[virtual_server]]
name = "vs"
listen = "127.0.0.1:$front"
mode = "http"
pool = "p"
max_connections = 30000

[virtual_server.http]
max_requests = 0
keepalive_timeout = "60s"
forwarded_headers = false
EOF
	env GOMAXPROCS=1 taskset -c 0 "$bin" run -c "$tmp/$variant.toml" >"$tmp/$variant-$scen-$round.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait_port "$front"
	sleep 0.5 # the warm pool fills
	out=$tmp/wrk-$variant-$scen-$round.txt
	t0=$(cpu_ticks "$pid")
	taskset -c 1 wrk -c 50 -t 2 -d "${HTTP_SECS}s" "${hdr[@]}" "http://127.0.0.1:$front/" >"$out" 2>&1
	t1=$(cpu_ticks "$pid")
	kill -TERM "$pid"
	wait "$pid" 2>/dev/null || true
	python3 - "$out" "$variant" "$scen" "$round" "$((t1 - t0))" "$(getconf CLK_TCK)" >>"$tmp/results" <<'EOF'
import re, sys
out, variant, scen, rnd, ticks, tck = sys.argv[1:]
t = open(out).read()
rps = float(re.search(r"^Requests/sec:\s*([\d.]+)", t, re.M).group(1))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
e = sum(int(x) for x in m.groups()) if m else 0
m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", t)
e += int(m.group(1)) if m else 0
print(variant, scen, rnd, rps, int(ticks) / int(tck), e)
EOF
	log "$(tail -n 1 "$tmp/results")"
}

log "nginx backend :$BACK on CPU 1; wrk -c 50 -t 2 -d ${HTTP_SECS}s; $ROUNDS rounds"
for ((r = 1; r <= ROUNDS; r++)); do
	for scen in ka close; do
		if ((r % 2)); then run with "$scen" "$r"; run without "$scen" "$r"; else run without "$scen" "$r"; run with "$scen" "$r"; fi
	done
done

python3 - "$tmp/results" "$HTTP_SECS" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
secs = float(sys.argv[2])
print()
print("warm pool + counters (with) against neither (without), median of %d rounds" % len({r[2] for r in rows}))
print("%-10s %-8s %12s %16s %7s" % ("scenario", "variant", "req/s", "req/proxy CPU-s", "errors"))
res = {}
for scen in ("ka", "close"):
    for v in ("with", "without"):
        rs = [r for r in rows if r[0] == v and r[1] == scen]
        rps = statistics.median(float(r[3]) for r in rs)
        per = statistics.median(float(r[3]) * secs / float(r[4]) for r in rs if float(r[4]) > 0)
        err = sum(int(r[5]) for r in rs)
        res[scen, v] = (rps, per)
        print("%-10s %-8s %12.0f %16.0f %7d" % (scen, v, rps, per, err))
for scen in ("ka", "close"):
    (a, ap), (b, bp) = res[scen, "with"], res[scen, "without"]
    verdict = "met" if ap / bp >= 0.97 else "MISSED"
    print("%-6s with/without: req/s %.3fx, per CPU-s %.3fx (bound >= 0.97x: %s)" % (scen, a / b, ap / bp, verdict))
EOF
