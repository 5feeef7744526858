#!/usr/bin/env bash
# bench/compare.sh — tether against HAProxy (and against no proxy at all) on
# 127.0.0.1:
#
#   1. iperf3, one stream: Gbit/s, and Gbit per proxy CPU-second;
#   2. redis-benchmark -c 50 (SET, GET): requests/s, and per proxy CPU-second;
#   3. memory per idle proxied connection (RSS delta of the proxy / N conns),
#      then for N more on top (the marginal cost, without what the first
#      batch paid once), its fds per conn, and (noisy, system-wide) kernel
#      memory per conn;
#   4. HTTP/1.1 through HAProxy (mode http, http-reuse safe), nginx (upstream
#      keepalive 32) and tether (mode http, reuse shared) to an nginx backend
#      returning a 64-byte body, with wrk -c 50 -t 2 --latency:
#        a. keepalive clients;  b. "Connection: close" clients (pooled backend);
#      requests/s, p99, requests per proxy CPU-second, backend connections
#      opened (the backend's stub_status "accepts"), errors, and where
#      TIME_WAIT lands (client / proxy front / proxy back / backend), counted
#      with ss by port 1 s after wrk ends. Every (target, scenario) pair gets
#      its own front and backend ports, so pools start cold and counts do not
#      mix. The issue's targets are printed beside the figures.
#        c. idle keepalive client conns: memory of a fresh proxy (each with
#           section 4's config, its own ports) holding IDLE_KA_CONNS client
#           conns that each did one GET and then stay idle and open
#           (bench/idleconns -request /): RSS delta of the proxy (nginx
#           master + worker) from before the first connect to 2 s after the
#           last response, per conn; then the same for IDLE_KA_CONNS more
#           conns on top (the marginal cost, without what a fresh proxy
#           touches once); fds per conn; and the backend conns the proxy
#           keeps meanwhile. tether/HAProxy and tether/nginx ratios.
#   5. tether bench --compare -c 20 (short, then long connections) through
#      tether's pooled http virtual server and against the backend nginx
#      directly: requests/s short and long, p50/p99, conns opened, ports used,
#      and the TIME_WAIT sockets tether bench counts on each side (client /
#      target, with sock_diag), plus the backend conns tether opened. tether
#      bench is the driver here because it reports those by side; wrk,
#      iperf3 and redis-benchmark above stay as the independent check.
#   6. load generator check: is tether bench fast enough not to be the
#      bottleneck? Against the backend nginx (moved to CPU 0 for this, alone),
#      the load generator on CPU 1 (tether bench with GOMAXPROCS=1):
#        tether bench --conn long -c 50        vs  wrk -c 50 -t 1
#        tether bench --conn short --close server -c 20 -n N  vs  ab -n N -c 20
#      (ab speaks HTTP/1.0 without -k: the server closes first, as with
#      --close server), target >= 0.9x; and, for information, the default
#      --close client short run, whose client side keeps every TIME_WAIT and
#      runs through the ephemeral ports. Each run gets its own nginx port.
#   7. HTTPS: HAProxy and tether both terminate TLS with the same ECDSA P-256
#      certificate (made here with openssl for 127.0.0.1) and forward plain
#      HTTP/1.1 to an nginx backend (64-byte body, as in 4). TLS 1.3 only on
#      both, HAProxy pinned to what tether (Go) negotiates: X25519 and
#      TLS_AES_128_GCM_SHA256; what each proxy negotiated is printed (and
#      checked equal) for both load generators:
#        a. new handshakes: tether bench --conn short -c 20 (one request per
#           connection, no session resumption: every one a full handshake,
#           X25519 offered alone) — handshakes/s and per proxy CPU-second;
#        b. keepalive: wrk -c 50 -t 2 over https — requests/s and per proxy
#           CPU-second.
#      tether/HAProxy ratios beside the issue's targets (>= 0.8x handshakes
#      per CPU-s, >= 1.0x keepalive requests per CPU-s), and the proxy's CPU
#      share, which says whether the load reached the proxy's limit.
#        c. idle keepalive client conns as in 4c, over TLS (idleconns
#           -cacert: handshake, one GET, then idle), through HAProxy, nginx
#           (TLS 1.3, X25519, TLS_AES_128_GCM_SHA256 as HAProxy) and tether.
#      4c and 7c are printed in one table ("idle keepalive client conns").
#
# HTTP settings, the same for every proxy where they exist: no per-client-conn
# request limit (tether: [virtual_server.http] max_requests = 0; nginx:
# keepalive_requests 100000), 60 s client keepalive, no X-Forwarded-* headers
# (tether: forwarded_headers = false; HAProxy and nginx add none by default),
# no access log. tether's pool: reuse "shared", max_idle 64, member
# max_connections 64. nginx as a proxy keeps its defaults otherwise (upstream
# keepalive_requests 1000).
#
# Proxy CPU is counted two ways: the proxy process's utime+stime, and all busy
# time of the proxy's CPU in /proc/stat (which also holds softirq work that is
# charged to no process). The fd limit decides how many idle conns fit: when
# the hard limit cannot be raised (no CAP_SYS_RESOURCE), the memory test uses
# fewer conns and HAProxy a lower maxconn, and the script says so.
#
# The proxy runs alone on CPU 0 (tether with GOMAXPROCS=1, HAProxy with
# nbthread 1); load generators and backends share CPU 1. Nothing leaves
# 127.0.0.1. Every process this script starts is killed when it exits.
#
# Usage (from the repo root):
#   bash bench/compare.sh            # full run, about 2.5 minutes (1 of them HTTP, 25 s HTTPS)
#   bash bench/compare.sh --quick    # smoke check: 1 s iperf3, fewer requests, 1000 idle conns, 2 s wrk
#   bash bench/compare.sh --http-only   # only the HTTP scenarios (4-6); --no-http skips them (and 5-7)
#   bash bench/compare.sh --loadgen-only   # only the load generator check (6), about 20 s
#   bash bench/compare.sh --no-loadgen     # everything but the load generator check
#   bash bench/compare.sh --https-only     # only the HTTPS scenarios (7), under a minute; --no-https skips them
#
# Needs haproxy iperf3 redis-server redis-benchmark taskset python3 timeout ss
# go; the HTTP scenarios also need wrk and nginx (apt-get install -y wrk nginx)
# and are skipped with a warning when those are absent; the load generator
# check's short row needs ab (apt-get install -y apache2-utils); HTTPS needs wrk,
# nginx and openssl. iperf3 and redis are needed only by sections 1-3.
#
# Environment:
#   TETHER_BIN=path     use this tether binary instead of building ./cmd/tether
#   HAPROXY_SPLICE=1    add "option splice-auto" to HAProxy (stock config otherwise)
#   IDLE_CONNS=N        idle connections for the memory test (default 5000; 1000 with --quick)
#   IDLE_KA_CONNS=N     idle keepalive client conns for 4c and 7c (default 2000; 500 with --quick; 0 skips them)
#   KEEP_TMP=1          keep the temp dir (configs, logs) for inspection
#   HTTP_SECS=N         wrk duration per HTTP run (default 5; 2 with --quick)
#   TETHER_HTTP_LOG=L   tether's log level in the HTTP runs (default warn)
#   LOADGEN_SECS=N      long runs of the load generator check (default 5; 2 with --quick)
#   LOADGEN_N=N         requests per short run of the check (default 20000; 5000 with --quick)
#   TBENCH_SECS=N       tether bench --compare duration per side (default 5; 2 with --quick)
#   HTTPS_SECS=N        duration of each HTTPS run, handshakes and wrk (default 5; 2 with --quick)
#
# Writes the table to stdout and the same figures as JSON to
# bench/results/compare-DATE.json (gitignored).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

QUICK=0 RUN_TCP=1 RUN_HTTP=1 RUN_HTTP_TARGETS=1 RUN_LOADGEN=1 RUN_TB=0 RUN_HTTPS=1
for arg in "$@"; do
	case "$arg" in
	--quick) QUICK=1 ;;
	--http-only) RUN_TCP=0 RUN_HTTPS=0 ;;
	--no-http) RUN_HTTP=0 RUN_HTTPS=0 ;;
	--loadgen-only) RUN_TCP=0 RUN_HTTP_TARGETS=0 RUN_HTTPS=0 ;;
	--no-loadgen) RUN_LOADGEN=0 ;;
	--https-only) RUN_TCP=0 RUN_HTTP=0 ;;
	--no-https) RUN_HTTPS=0 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "compare.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
	esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

if ((QUICK)); then
	IPERF_SECS=1 REDIS_N=20000
	IDLE_N=${IDLE_CONNS:-1000}
	IDLE_KA_N=${IDLE_KA_CONNS:-500}
	HTTP_SECS=${HTTP_SECS:-2}
	LG_SECS=${LOADGEN_SECS:-2} LG_N=${LOADGEN_N:-5000} TB_SECS=${TBENCH_SECS:-2}
	HTTPS_SECS=${HTTPS_SECS:-2}
else
	IPERF_SECS=5 REDIS_N=200000
	IDLE_N=${IDLE_CONNS:-5000}
	IDLE_KA_N=${IDLE_KA_CONNS:-2000}
	HTTP_SECS=${HTTP_SECS:-5}
	LG_SECS=${LOADGEN_SECS:-5} LG_N=${LOADGEN_N:-20000} TB_SECS=${TBENCH_SECS:-5}
	HTTPS_SECS=${HTTPS_SECS:-5}
fi
((RUN_HTTP)) || RUN_HTTP_TARGETS=0 RUN_LOADGEN=0
((RUN_TCP || RUN_HTTP_TARGETS || RUN_LOADGEN || RUN_HTTPS)) || { echo "compare.sh: those options leave nothing to run" >&2; exit 2; }
REDIS_CLIENTS=50
PROXY_CPU=0 LOAD_CPU=1

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
warn() { printf '%s WARNING: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- tools
declare -A PKG=(
	[haproxy]=haproxy [iperf3]=iperf3 [redis-server]=redis-server
	[redis-benchmark]=redis-tools [taskset]=util-linux [python3]=python3
	[timeout]=coreutils [ss]=iproute2 [go]=golang-go
)
missing=() needed=(haproxy taskset python3 timeout ss go)
((RUN_TCP)) && needed+=(iperf3 redis-server redis-benchmark)
for p in "${needed[@]}"; do
	command -v "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
	pkgs=$(for p in "${missing[@]}"; do echo "${PKG[$p]}"; done | sort -u | tr '\n' ' ')
	die "missing: ${missing[*]}
install them with:  apt-get install -y ${pkgs}"
fi
if ((RUN_HTTP)); then
	http_missing=()
	for p in wrk nginx; do command -v "$p" >/dev/null 2>&1 || http_missing+=("$p"); done
	if ((${#http_missing[@]})); then
		msg="missing for the HTTP scenarios: ${http_missing[*]}; install with:  apt-get install -y ${http_missing[*]}"
		((RUN_TCP)) || die "$msg"
		printf '%s WARNING: %s (HTTP scenarios skipped)\n' "$(date +%T)" "$msg" >&2
		RUN_HTTP=0 RUN_HTTP_TARGETS=0 RUN_LOADGEN=0
	fi
fi
if ((RUN_HTTPS)); then
	https_missing=()
	for p in wrk nginx openssl; do command -v "$p" >/dev/null 2>&1 || https_missing+=("$p"); done
	if ((${#https_missing[@]})); then
		msg="missing for the HTTPS scenarios: ${https_missing[*]}; install with:  apt-get install -y ${https_missing[*]}"
		((RUN_TCP || RUN_HTTP)) || die "$msg"
		printf '%s WARNING: %s (HTTPS scenarios skipped)\n' "$(date +%T)" "$msg" >&2
		RUN_HTTPS=0
	fi
fi
# 4c and 7c, the idle keepalive memory tests: with their sections, unless IDLE_KA_CONNS=0.
RUN_KA_HTTP=0 RUN_KA_HTTPS=0
if ((IDLE_KA_N > 0)); then RUN_KA_HTTP=$RUN_HTTP_TARGETS RUN_KA_HTTPS=$RUN_HTTPS; fi
HAVE_AB=1
if ((RUN_LOADGEN)) && ! command -v ab >/dev/null 2>&1; then
	printf '%s WARNING: ab missing; the load generator check has no short reference (apt-get install -y apache2-utils)\n' "$(date +%T)" >&2
	HAVE_AB=0
fi
ncpu=$(nproc)
if ((ncpu < 2)); then
	warn "only $ncpu CPU: proxy and load share CPU 0; figures will be pessimistic"
	LOAD_CPU=0
fi
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- cleanup
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tether-compare.XXXXXX")
PIDS=()
CHILD_PIDS=() # children of PIDS that a SIGKILL of their parent would leave behind (nginx workers)
cleanup() {
	local rc=$? pid i
	trap - EXIT INT TERM
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill -TERM "${PIDS[i]}" 2>/dev/null || true
	done
	for i in $(seq 30); do
		local alive=0
		for pid in "${PIDS[@]}" "${CHILD_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	for pid in "${PIDS[@]}" "${CHILD_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [[ ${KEEP_TMP:-0} == 1 ]]; then
		echo "temp dir kept: $tmp" >&2
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_bg NAME CMD...: start CMD in the background, output to $tmp/NAME.log;
# sets BG_PID. `taskset` and `env` exec, so the PID is the program's own.
start_bg() {
	local name=$1
	shift
	"$@" >"$tmp/$name.log" 2>&1 </dev/null &
	BG_PID=$!
	PIDS+=("$BG_PID")
}

# stop_pid PID: SIGTERM, wait up to 5 s, then SIGKILL.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# wait_until SECS DESC CMD...: poll CMD every 0.1 s until it succeeds.
wait_until() {
	local secs=$1 desc=$2 i
	shift 2
	for ((i = 0; i < secs * 10; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	warn "timed out after ${secs}s waiting for $desc"
	return 1
}

listening() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }
alive() { kill -0 "$1" 2>/dev/null; }
# wait_listen PID PORT...: every PORT listening while PID is still alive.
wait_listen() {
	local pid=$1 p
	shift
	for p in "$@"; do
		wait_until 15 "port $p to listen" bash -c "kill -0 $pid 2>/dev/null || exit 0; [[ -n \$(ss -Hltn 'sport = :$p') ]]" || return 1
		alive "$pid" || return 1
	done
}

# Ports: below the ephemeral range (32768-60999), so that thousands of client
# connections cannot take one, never one handed out before, and free now.
USED_PORTS=" "
pick_port() {
	local p
	p=$(python3 - "$USED_PORTS" <<'EOF'
import random, socket, sys
used = set(sys.argv[1].split())
for _ in range(500):
    p = random.randint(20000, 32000)
    if str(p) in used:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
else:
    sys.exit("no free port")
EOF
	)
	USED_PORTS+="$p "
	echo "$p"
}

cpu_ticks() { # utime+stime of PID, in clock ticks
	python3 -c 'import sys; f=open("/proc/%s/stat"%sys.argv[1]).read().rsplit(")",1)[1].split(); print(int(f[11])+int(f[12]))' "$1"
}
# cpu_stat: "busy0 total0 busy1 total1" ticks of the proxy and load CPUs (/proc/stat).
cpu_stat() {
	awk -v a="cpu$PROXY_CPU" -v b="cpu$LOAD_CPU" '
		$1 == a || $1 == b { busy = $2 + $3 + $4 + $7 + $8 + $9; tot = busy + $5 + $6; v[$1] = busy " " tot; us[$1] = $2 + $3 + $4 }
		END { print v[a], v[b], us[a] }' /proc/stat
}
# put_cpu_util PREFIX "BEFORE" "AFTER" [PROXY_TICKS]: busy fraction of each CPU
# between two cpu_stat readings; with the proxy's own ticks, also the share of
# the proxy CPU that other processes took (user+system time not the proxy's).
put_cpu_util() {
	local u u0 u1 b0 f0
	u=$(python3 -c 'import sys; a=list(map(int,sys.argv[1].split())); b=list(map(int,sys.argv[2].split())); t=sys.argv[4]
tot0 = max(1, b[1]-a[1])
foreign = "nan" if t == "" else "%.3f" % max(0.0, (b[4]-a[4]-int(t))/tot0)
print("%.3f %.3f %.3f %s" % ((b[0]-a[0])/tot0, (b[2]-a[2])/max(1,b[3]-a[3]), (b[0]-a[0])/int(sys.argv[3]), foreign))' "$2" "$3" "$CLK_TCK" "${4:-}")
	read -r u0 u1 b0 f0 <<<"$u"
	put "$1.cpu_proxy_util" "$u0"
	put "$1.cpu_load_util" "$u1"
	put "$1.cpu_proxy_busy_s" "$b0"
	if [[ $f0 != nan ]]; then
		put "$1.cpu_proxy_foreign" "$f0"
		if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0.05 else 1)' "$f0"; then
			warn "other processes took $(python3 -c "print(round(100*$f0))")% of CPU $PROXY_CPU during $1: its figures are disturbed (busy host?)"
		fi
	fi
}
# kernel_kb: memory in use that is neither page cache nor process anonymous
# memory (MemTotal - MemFree - Buffers - Cached - AnonPages): slab, page
# tables, kernel stacks, socket buffers, and large kmallocs such as a pipe's
# slot array (which Slab does not show).
kernel_kb() {
	awk '{v[$1] = $2} END {print v["MemTotal:"] - v["MemFree:"] - v["Buffers:"] - v["Cached:"] - v["AnonPages:"]}' /proc/meminfo
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

RESULTS=$tmp/results.txt
: >"$RESULTS"
put() { echo "$1 $2" >>"$RESULTS"; } # put KEY VALUE

# ---------------------------------------------------------------- limits
# HAProxy wants ~2*maxconn fds (60015 for maxconn 30000) and refuses to start
# without them; an idle proxied conn holds 2 fds in tether (its 2 sockets;
# splice pipes are borrowed only during bursts). An idle keepalive client conn
# (4c, 7c) holds 1 fd, plus the proxy's idle backend conns (bounded by the pool
# for tether and nginx, by what was in use at once for HAProxy): 2 at most.
# Raise the limit as far as allowed (needs CAP_SYS_RESOURCE beyond the hard
# limit), then fit the tests into it.
want_fds=$(((IDLE_N > IDLE_KA_N ? IDLE_N : IDLE_KA_N) * 2 + 1024))
((want_fds >= 61000)) || want_fds=61000
hard=$(ulimit -Hn)
if [[ $hard != unlimited ]] && ((hard < want_fds)); then
	ulimit -Hn "$want_fds" 2>/dev/null || true
fi
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
FDS=$(ulimit -n)
[[ $FDS == unlimited ]] && FDS=1048576
HAPROXY_MAXCONN=30000
# 2 fds per conn, plus with splice 2 per pipe (maxpipes defaults to maxconn/4).
if [[ ${HAPROXY_SPLICE:-0} == 1 ]]; then ha_fit=$(((FDS - 200) * 2 / 5)); else ha_fit=$(((FDS - 200) / 2)); fi
if ((ha_fit < HAPROXY_MAXCONN)); then
	HAPROXY_MAXCONN=$ha_fit
	warn "ulimit -n is $FDS (hard limit; raising it needs CAP_SYS_RESOURCE): HAProxy maxconn lowered from 30000 to $HAPROXY_MAXCONN"
fi
# Two batches of IDLE_N (the second gives the marginal cost).
if ((IDLE_N * 4 + 1024 > FDS)); then
	new_n=$(((FDS - 1024) / 4 / 50 * 50))
	warn "ulimit -n is $FDS: tether needs 2 fds per idle proxied conn (two batches), so idle conns lowered from $IDLE_N to $new_n"
	IDLE_N=$new_n
fi
# The idle keepalive tests open two batches of IDLE_KA_N conns (the second
# gives the marginal cost).
if ((IDLE_KA_N * 4 + 1024 > FDS)); then
	new_n=$(((FDS - 1024) / 4 / 50 * 50))
	warn "ulimit -n is $FDS: a proxy may need 2 fds per idle keepalive client conn (two batches), so those conns lowered from $IDLE_KA_N to $new_n"
	IDLE_KA_N=$new_n
fi
# nginx's worker_connections counts client and upstream conns: room for the
# idle keepalive tests' two batches.
NGINX_WORKER_CONNS=8192
((IDLE_KA_N * 4 + 512 <= NGINX_WORKER_CONNS)) || NGINX_WORKER_CONNS=$((IDLE_KA_N * 4 + 512))

# ---------------------------------------------------------------- builds
log "temp dir $tmp; quick=$QUICK tcp=$RUN_TCP http=$RUN_HTTP_TARGETS loadgen=$RUN_LOADGEN https=$RUN_HTTPS iperf3=${IPERF_SECS}s redis -n $REDIS_N -c $REDIS_CLIENTS idle=$IDLE_N idle-ka=$((RUN_KA_HTTP || RUN_KA_HTTPS ? IDLE_KA_N : 0)) wrk=${HTTP_SECS}s tether-bench=${TB_SECS}s loadgen=${LG_SECS}s/-n $LG_N https=${HTTPS_SECS}s"
TETHER=""
if [[ -n ${TETHER_BIN:-} ]]; then
	[[ -x $TETHER_BIN ]] || die "TETHER_BIN=$TETHER_BIN is not executable"
	TETHER=$TETHER_BIN
elif go build -o "$tmp/tether" ./cmd/tether >"$tmp/build-tether.log" 2>&1; then
	TETHER=$tmp/tether
else
	warn "tether does not build; its column will read n/a. First errors:"
	head -n 8 "$tmp/build-tether.log" | sed 's/^/    /' >&2
fi
IDLECONNS=""
if ((!RUN_TCP && !RUN_KA_HTTP && !RUN_KA_HTTPS)); then
	:
elif go build -o "$tmp/idleconns" ./bench/idleconns >"$tmp/build-idleconns.log" 2>&1; then
	IDLECONNS=$tmp/idleconns
else
	warn "bench/idleconns does not build; the memory tests are skipped:"
	head -n 8 "$tmp/build-idleconns.log" | sed 's/^/    /' >&2
	RUN_KA_HTTP=0 RUN_KA_HTTPS=0
fi
TETHER_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain -- cmd config pool proxy sockopt 2>/dev/null) ]]; then
	TETHER_COMMIT+="+dirty"
fi

# ---------------------------------------------------------------- proxy configs
# haproxy_cfg FILE FRONT_PORT:BACK_PORT...
haproxy_cfg() {
	local file=$1 pair i=0
	shift
	{
		cat <<EOF
global
    nbthread 1
    maxconn $HAPROXY_MAXCONN

defaults
    mode tcp
    maxconn $HAPROXY_MAXCONN
    timeout connect 3s
    timeout client 300s
    timeout server 300s
    timeout client-fin 30s
    timeout server-fin 30s
EOF
		[[ ${HAPROXY_SPLICE:-0} == 1 ]] && echo "    option splice-auto"
		for pair in "$@"; do
			i=$((i + 1))
			cat <<EOF

listen l$i
    bind 127.0.0.1:${pair%%:*}
    server s1 127.0.0.1:${pair##*:}
EOF
		done
	} >"$file"
}

# tether_cfg FILE FRONT_PORT:BACK_PORT...
tether_cfg() {
	local file=$1 pair i=0
	shift
	{
		cat <<EOF
[global]
shutdown_timeout = "2s"

[log]
level = "warn"
format = "console"
access = false
EOF
		for pair in "$@"; do
			i=$((i + 1))
			cat <<EOF

[pool.p$i]
method = "round-robin"
preconnect = 0
members = [ { address = "127.0.0.1:${pair##*:}" } ]

[pool.p$i.health]
type = "none"

[[virtual_server]]
name = "vs$i"
listen = "127.0.0.1:${pair%%:*}"
mode = "tcp"
pool = "p$i"
client_profile = "tcp"
server_profile = "tcp"
max_connections = 30000
EOF
		done
	} >"$file"
}

# start_proxy KIND TAG PAIR...: start haproxy|tether on CPU 0 proxying each
# FRONT:BACK pair; sets PROXY_PID (empty when it could not start).
start_proxy() {
	local kind=$1 tag=$2 pair fronts=()
	shift 2
	PROXY_PID=""
	for pair in "$@"; do fronts+=("${pair%%:*}"); done
	case $kind in
	haproxy)
		haproxy_cfg "$tmp/haproxy-$tag.cfg" "$@"
		if ! haproxy -c -q -f "$tmp/haproxy-$tag.cfg" >"$tmp/haproxy-$tag.check" 2>&1; then
			warn "haproxy rejects its config:"; sed 's/^/    /' "$tmp/haproxy-$tag.check" >&2
			return 1
		fi
		start_bg "haproxy-$tag" taskset -c "$PROXY_CPU" haproxy -db -f "$tmp/haproxy-$tag.cfg"
		;;
	tether)
		[[ -n $TETHER ]] || return 1
		tether_cfg "$tmp/tether-$tag.toml" "$@"
		if ! "$TETHER" check -c "$tmp/tether-$tag.toml" >"$tmp/tether-$tag.check" 2>&1; then
			warn "tether check rejects its config:"; sed 's/^/    /' "$tmp/tether-$tag.check" >&2
			return 1
		fi
		start_bg "tether-$tag" env GOMAXPROCS=1 taskset -c "$PROXY_CPU" "$TETHER" run -c "$tmp/tether-$tag.toml"
		;;
	esac
	if ! wait_listen "$BG_PID" "${fronts[@]}" || ! alive "$BG_PID"; then
		warn "$kind did not start; its log:"; tail -n 20 "$tmp/$kind-$tag.log" | sed 's/^/    /' >&2
		stop_pid "$BG_PID"
		return 1
	fi
	PROXY_PID=$BG_PID
	sleep 0.3 # let it settle (health state, first GC) before measuring
}

# ---------------------------------------------------------------- 1+2: throughput
if ((RUN_TCP)); then # ends before "4: http"
IPERF_PORT=$(pick_port) REDIS_PORT=$(pick_port)
HA_IPERF=$(pick_port) HA_REDIS=$(pick_port)
TE_IPERF=$(pick_port) TE_REDIS=$(pick_port)

log "starting backends on CPU $LOAD_CPU: iperf3 -s :$IPERF_PORT, redis-server :$REDIS_PORT"
start_bg iperf3-server taskset -c "$LOAD_CPU" iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT"
IPERF_SRV=$BG_PID
start_bg redis-server taskset -c "$LOAD_CPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
	--save "" --appendonly no --protected-mode no --maxclients 20000 --daemonize no --loglevel warning
REDIS_SRV=$BG_PID
wait_listen "$IPERF_SRV" "$IPERF_PORT" || die "iperf3 -s did not start: $(tail -n 5 "$tmp/iperf3-server.log")"
wait_listen "$REDIS_SRV" "$REDIS_PORT" || die "redis-server did not start: $(tail -n 5 "$tmp/redis-server.log")"

# run_iperf TARGET PORT [PROXY_PID]
run_iperf() {
	local target=$1 port=$2 ppid=${3:-} t0 t1 out=$tmp/iperf-$1.json gbps s0 s1
	[[ -n $ppid ]] && t0=$(cpu_ticks "$ppid")
	s0=$(cpu_stat)
	if ! timeout -k 5 $((IPERF_SECS + 30)) taskset -c "$LOAD_CPU" \
		iperf3 -c 127.0.0.1 -p "$port" -t "$IPERF_SECS" -J >"$out" 2>"$tmp/iperf-$target.err"; then
		warn "iperf3 via $target failed: $(jq -r '.error // empty' "$out" 2>/dev/null) $(head -c 300 "$tmp/iperf-$target.err")"
		return 0
	fi
	[[ -n $ppid ]] && t1=$(cpu_ticks "$ppid")
	s1=$(cpu_stat)
	put_cpu_util "iperf.$target" "$s0" "$s1" "${ppid:+$((t1 - t0))}"
	gbps=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.3f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))' "$out")
	put "iperf.$target.gbps" "$gbps"
	if [[ -n $ppid ]]; then
		put "iperf.$target.cpu_s" "$(python3 -c "print('%.3f' % (($t1-$t0)/$CLK_TCK))")"
		put "iperf.$target.secs" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_received"]["seconds"])' "$out")"
	fi
	log "iperf3 $target: $gbps Gbit/s"
}

# run_redis TARGET PORT [PROXY_PID]
run_redis() {
	local target=$1 port=$2 ppid=${3:-} t0 t1 out=$tmp/redis-$1.csv line name rps s0 s1
	[[ -n $ppid ]] && t0=$(cpu_ticks "$ppid")
	s0=$(cpu_stat)
	if ! timeout -k 5 300 taskset -c "$LOAD_CPU" redis-benchmark -h 127.0.0.1 -p "$port" \
		-c "$REDIS_CLIENTS" -n "$REDIS_N" -t set,get --csv >"$out" 2>"$tmp/redis-$target.err"; then
		warn "redis-benchmark via $target failed: $(head -c 300 "$tmp/redis-$target.err")"
		return 0
	fi
	[[ -n $ppid ]] && t1=$(cpu_ticks "$ppid")
	s1=$(cpu_stat)
	put_cpu_util "redis.$target" "$s0" "$s1" "${ppid:+$((t1 - t0))}"
	while IFS=' ' read -r name rps; do
		put "redis.$target.$name" "$rps"
	done < <(python3 -c '
import csv, sys
for row in csv.reader(open(sys.argv[1])):
    if len(row) >= 2 and row[0] in ("SET", "GET"):
        print(row[0], row[1])' "$out")
	if [[ -n $ppid ]]; then
		put "redis.$target.cpu_s" "$(python3 -c "print('%.3f' % (($t1-$t0)/$CLK_TCK))")"
	fi
	log "redis-benchmark $target: $(grep -E '^"(SET|GET)"' "$out" | cut -d, -f1,2 | tr '\n' ' ')"
}

log "direct"
run_iperf direct "$IPERF_PORT"
run_redis direct "$REDIS_PORT"

for kind in haproxy tether; do
	if [[ $kind == haproxy ]]; then fport=$HA_IPERF rport=$HA_REDIS; else fport=$TE_IPERF rport=$TE_REDIS; fi
	log "$kind (CPU $PROXY_CPU): :$fport -> iperf3, :$rport -> redis"
	if start_proxy "$kind" tput "$fport:$IPERF_PORT" "$rport:$REDIS_PORT"; then
		run_iperf "$kind" "$fport" "$PROXY_PID"
		run_redis "$kind" "$rport" "$PROXY_PID"
		alive "$PROXY_PID" || warn "$kind died during the run: $(tail -n 5 "$tmp/$kind-tput.log")"
		stop_pid "$PROXY_PID"
	else
		warn "$kind unavailable for the throughput tests"
	fi
done
stop_pid "$IPERF_SRV"
stop_pid "$REDIS_SRV"

# ---------------------------------------------------------------- 3: idle memory
holder_count() { awk '/^accepted/ {n=$2} END {print n+0}' "$tmp/holder.log"; }

# measure_idle KIND: RSS delta of a fresh proxy holding IDLE_N idle conns.
measure_idle() {
	local kind=$1 front rss0 rss1 rss2 fds0 fds1 kern0 kern1 cpid cpid2 base
	front=$(pick_port)
	start_proxy "$kind" idle "$front:$HOLD_PORT" || { warn "$kind unavailable for the memory test"; return 0; }
	sleep 1
	rss0=$(rss_kb "$PROXY_PID")
	fds0=$(ls "/proc/$PROXY_PID/fd" | wc -l)
	kern0=$(kernel_kb)
	base=$(holder_count)
	start_bg "idleconns-$kind" taskset -c "$LOAD_CPU" "$IDLECONNS" -stdin=false -connect "127.0.0.1:$front" -n "$IDLE_N" -timeout 60s
	cpid=$BG_PID
	if ! wait_until 70 "$IDLE_N client connections via $kind" \
		bash -c "grep -q '^ready' '$tmp/idleconns-$kind.log' || ! kill -0 $cpid 2>/dev/null" ||
		! grep -q '^ready' "$tmp/idleconns-$kind.log"; then
		warn "idle clients via $kind failed: $(tail -n 3 "$tmp/idleconns-$kind.log")"
		stop_pid "$cpid"; stop_pid "$PROXY_PID"
		return 0
	fi
	if ! wait_until 30 "$IDLE_N backend connections from $kind" \
		bash -c "(( \$(awk '/^accepted/ {n=\$2} END {print n+0}' '$tmp/holder.log') >= $base + $IDLE_N ))"; then
		warn "$kind established only $(($(holder_count) - base)) of $IDLE_N backend connections"
		stop_pid "$cpid"; stop_pid "$PROXY_PID"
		return 0
	fi
	sleep 2 # settle: let the proxy finish whatever it does per new conn
	rss1=$(rss_kb "$PROXY_PID")
	fds1=$(ls "/proc/$PROXY_PID/fd" | wc -l)
	kern1=$(kernel_kb)
	# A second batch on top: its RSS per conn leaves out what the first
	# paid once (code pages, pools, runtime warm-up, peak goroutine stacks).
	rss2=""
	start_bg "idleconns2-$kind" taskset -c "$LOAD_CPU" "$IDLECONNS" -stdin=false -connect "127.0.0.1:$front" -n "$IDLE_N" -timeout 60s
	cpid2=$BG_PID
	local held1 held2
	held1=$(holder_count)
	if wait_until 70 "$IDLE_N more client connections via $kind" \
		bash -c "grep -q '^ready' '$tmp/idleconns2-$kind.log' || ! kill -0 $cpid2 2>/dev/null" &&
		grep -q '^ready' "$tmp/idleconns2-$kind.log"; then
		# The holder (sharing CPU 1 with the clients) may drop some SYNs of
		# the burst; a proxy then resets those clients after its connect
		# timeout. Count what is held.
		wait_until 15 "$IDLE_N more backend connections from $kind" \
			bash -c "(( \$(awk '/^accepted/ {n=\$2} END {print n+0}' '$tmp/holder.log') >= $held1 + $IDLE_N ))" || true
		sleep 2
		rss2=$(rss_kb "$PROXY_PID")
		held2=$(holder_count)
		((held2 - held1 == IDLE_N)) || warn "$kind: $((held2 - held1)) of the second batch's $IDLE_N conns reached the holder (the others were reset after the connect timeout); marginal memory is per held conn"
		if ((held2 > held1)); then
			put "idle.$kind.rss2_kb" "$rss2"
			put "idle.$kind.marginal_n" "$((held2 - held1))"
			put "idle.$kind.marginal_bytes" "$(((rss2 - rss1) * 1024 / (held2 - held1)))"
		else
			rss2=""
		fi
	else
		warn "the second batch of idle conns via $kind failed: $(tail -n 3 "$tmp/idleconns2-$kind.log")"
	fi
	stop_pid "$cpid2"
	put "idle.$kind.kernel0_kb" "$kern0"
	put "idle.$kind.kernel1_kb" "$kern1"
	put "idle.$kind.kernel_bytes" "$(((kern1 - kern0) * 1024 / IDLE_N))"
	put "idle.$kind.rss0_kb" "$rss0"
	put "idle.$kind.rss1_kb" "$rss1"
	put "idle.$kind.n" "$IDLE_N"
	put "idle.$kind.bytes" "$(((rss1 - rss0) * 1024 / IDLE_N))"
	put "idle.$kind.fds0" "$fds0"
	put "idle.$kind.fds1" "$fds1"
	put "idle.$kind.fds_per_conn" "$(python3 -c "print('%.2f' % (($fds1 - $fds0) / $IDLE_N))")"
	log "$kind idle: RSS ${rss0} kB -> ${rss1} kB, fds $fds0 -> $fds1 for $IDLE_N conns = $(((rss1 - rss0) * 1024 / IDLE_N)) B/conn; kernel ${kern0} kB -> ${kern1} kB; ${held2:-0} - ${held1:-0} more held: RSS ${rss2:-n/a} kB$([[ -n $rss2 ]] && echo " = $(((rss2 - rss1) * 1024 / (held2 - held1))) B/conn")"
	stop_pid "$cpid"
	wait_until 30 "backend conns via $kind to close" bash -c "(( \$(awk '/^accepted/ {n=\$2} END {print n+0}' '$tmp/holder.log') <= $base ))" || true
	stop_pid "$PROXY_PID"
}

if [[ -n $IDLECONNS ]]; then
	# A fresh holder on a fresh port per proxy: the conns one proxy closed
	# (TIME_WAIT, the holder's own state) do not slow the next one's.
	for kind in haproxy tether; do
		HOLD_PORT=$(pick_port)
		log "memory: 2 x $IDLE_N idle conns through $kind to a holder on :$HOLD_PORT"
		start_bg holder taskset -c "$LOAD_CPU" "$IDLECONNS" -stdin=false -hold "127.0.0.1:$HOLD_PORT"
		HOLDER=$BG_PID
		wait_listen "$HOLDER" "$HOLD_PORT" || die "idle holder did not start: $(tail -n 5 "$tmp/holder.log")"
		measure_idle "$kind"
		stop_pid "$HOLDER"
	done
fi
fi # RUN_TCP

# ---------------------------------------------------------------- 4: http
# Targets: direct (the backend nginx itself), haproxy, nginx (as a proxy),
# tether. Scenarios: ka (keepalive clients), close ("Connection: close").
HTTP_TARGETS=(direct haproxy nginx tether)
HTTP_SCENARIOS=(ka close)
HTTP_CONNS=50 HTTP_THREADS=2
TETHER_POOL_MAX=64 # tether's member max_connections and max_idle: the bound on backend conns
NGINX_KEEPALIVE=32
# exactly 64 bytes
HTTP_BODY="tether-bench-64-byte-body-0123456789-abcdefghijklmnopqrstuvwxyz."

# tw_overflow: the kernel's TCPTimeWaitOverflow counter (TIME_WAIT sockets it
# did not keep because tcp_max_tw_buckets was reached).
tw_overflow() {
	awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) k[i] = $i; h = 1 } else for (i = 1; i <= NF; i++) if (k[i] == "TCPTimeWaitOverflow") print $i }' /proc/net/netstat
}

# nginx_common DIR: the lines every nginx instance here shares (all paths in DIR).
nginx_common() {
	cat <<EOF
worker_processes 1;
error_log $1/error.log warn;
pid $1/nginx.pid;
events { worker_connections $NGINX_WORKER_CONNS; }
EOF
}
nginx_http_common() {
	cat <<EOF
    access_log off;
    client_body_temp_path $1/tmp-body;
    proxy_temp_path $1/tmp-proxy;
    fastcgi_temp_path $1/tmp-fastcgi;
    uwsgi_temp_path $1/tmp-uwsgi;
    scgi_temp_path $1/tmp-scgi;
    keepalive_timeout 60s;
    keepalive_requests 100000;
EOF
}

# nginx_backend_cfg DIR STUB_PORT PORT...: the backend; every PORT answers
# any request with 200 and the 64-byte body; STUB_PORT serves stub_status.
nginx_backend_cfg() {
	local dir=$1 stub=$2 p
	shift 2
	{
		nginx_common "$dir"
		echo "http {"
		nginx_http_common "$dir"
		echo "    server {"
		for p in "$@"; do echo "        listen 127.0.0.1:$p backlog=4096;"; done
		cat <<EOF
        location / { default_type text/plain; return 200 "$HTTP_BODY"; }
    }
    server {
        listen 127.0.0.1:$stub;
        location / { stub_status; }
    }
}
EOF
	} >"$dir/nginx.conf"
}

# nginx_proxy_cfg DIR [--tls CERT KEY] FRONT:BACK...: with --tls, each
# server terminates TLS 1.3 as section 7's HAProxy does (X25519,
# TLS_AES_128_GCM_SHA256).
nginx_proxy_cfg() {
	local dir=$1 pair i=0 ssl="" tls_lines=""
	shift
	if [[ $1 == --tls ]]; then
		ssl=" ssl"
		tls_lines="        ssl_certificate $2;
        ssl_certificate_key $3;
        ssl_protocols TLSv1.3;
        ssl_ecdh_curve X25519;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
"
		shift 3
	fi
	{
		nginx_common "$dir"
		echo "http {"
		nginx_http_common "$dir"
		for pair in "$@"; do
			i=$((i + 1))
			cat <<EOF
    upstream b$i {
        server 127.0.0.1:${pair##*:};
        keepalive $NGINX_KEEPALIVE;
    }
    server {
        listen 127.0.0.1:${pair%%:*}$ssl backlog=4096;
${tls_lines}        location / {
            proxy_pass http://b$i;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
		done
		echo "}"
	} >"$dir/nginx.conf"
}

# haproxy_http_cfg FILE FRONT:BACK...
haproxy_http_cfg() {
	local file=$1 pair i=0
	shift
	{
		cat <<EOF
global
    nbthread 1
    maxconn $HAPROXY_MAXCONN

defaults
    mode http
    option http-keep-alive
    http-reuse safe
    maxconn $HAPROXY_MAXCONN
    timeout connect 3s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    timeout http-request 10s
EOF
		for pair in "$@"; do
			i=$((i + 1))
			cat <<EOF

listen h$i
    bind 127.0.0.1:${pair%%:*}
    server s1 127.0.0.1:${pair##*:}
EOF
		done
	} >"$file"
}

# tether_http_cfg FILE LOGLEVEL FRONT:BACK...
tether_http_cfg() {
	local file=$1 level=$2 pair i=0
	shift 2
	{
		cat <<EOF
[global]
shutdown_timeout = "2s"

[log]
level = "$level"
format = "console"
access = false
EOF
		for pair in "$@"; do
			i=$((i + 1))
			cat <<EOF

[pool.h$i]
method = "round-robin"
reuse = "shared"
max_idle = $TETHER_POOL_MAX
members = [ { address = "127.0.0.1:${pair##*:}", max_connections = $TETHER_POOL_MAX } ]

[pool.h$i.health]
type = "none"

[[virtual_server]]
name = "h$i"
listen = "127.0.0.1:${pair%%:*}"
mode = "http"
pool = "h$i"
max_connections = 30000

[virtual_server.http]
max_requests = 0
keepalive_timeout = "60s"
forwarded_headers = false
EOF
		done
	} >"$file"
}

# start_nginx NAME DIR CPU: nginx -p DIR -c DIR/nginx.conf in the foreground
# on CPU; sets BG_PID (master) and NGINX_PIDS (master and workers).
start_nginx() {
	local name=$1 dir=$2 cpu=$3
	if ! nginx -t -q -p "$dir" -c "$dir/nginx.conf" >"$tmp/$name.check" 2>&1; then
		warn "nginx ($name) rejects its config:"; sed 's/^/    /' "$tmp/$name.check" >&2
		return 1
	fi
	start_bg "$name" taskset -c "$cpu" nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;'
	NGINX_PIDS=("$BG_PID")
}
# nginx_workers MASTER: add its workers to NGINX_PIDS and CHILD_PIDS.
nginx_workers() {
	local w
	for w in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		NGINX_PIDS+=("$w")
		CHILD_PIDS+=("$w")
	done
	((${#NGINX_PIDS[@]} > 1)) || { warn "no nginx worker under $1"; return 1; }
}
# stop_nginx MASTER: SIGTERM (it stops its workers), then SIGKILL stragglers.
stop_nginx() {
	local m=$1 ws w
	ws=$(ps -o pid= --ppid "$m" 2>/dev/null || true)
	stop_pid "$m"
	for w in $ws; do kill -KILL "$w" 2>/dev/null || true; done
}

# stub_accepts: the backend's accepted-connection count (stub_status
# "accepts"); the reading's own connection is included.
stub_accepts() {
	python3 - "$STUB_PORT" <<'EOF'
import sys, urllib.request
body = urllib.request.urlopen("http://127.0.0.1:%s/" % sys.argv[1], timeout=3).read().decode()
print(body.splitlines()[2].split()[0])
EOF
}

# tw_count FRONT BACK: "client proxy_front proxy_back backend" TIME_WAIT
# sockets by 4-tuple side (FRONT == BACK for direct: client and backend only).
tw_count() {
	local f=$1 b=$2
	ss -Htan state time-wait "( sport = :$f or dport = :$f or sport = :$b or dport = :$b )" 2>/dev/null |
		python3 -c '
import sys
f, b = sys.argv[1], sys.argv[2]
n = dict(client=0, front=0, back=0, backend=0)
for line in sys.stdin:
    x = line.split()
    if len(x) < 2:
        continue
    lp, rp = x[-2].rsplit(":", 1)[1], x[-1].rsplit(":", 1)[1]
    if lp == b:
        n["backend"] += 1          # the backend closed first
    elif rp == b and f != b:
        n["back"] += 1             # the proxy closed first toward the backend
    elif lp == f:
        n["front"] += 1            # the proxy closed first toward the client
    elif rp == f:
        n["client"] += 1           # wrk closed first
print(n["client"], n["front"], n["back"], n["backend"])' "$f" "$b"
}

# run_wrk TARGET SCEN FRONT BACK [PROXY_PID...]
run_wrk() {
	local target=$1 scen=$2 front=$3 back=$4 key="http.$2.$1" out=$tmp/wrk-$2-$1.txt
	shift 4
	local pids=("$@") t0=0 t1=0 pid a0 a1 o0 o1 tw hdr=() parsed k v twc twf twb twk
	[[ $scen == close ]] && hdr=(-H "Connection: close")
	a0=$(stub_accepts) || { warn "backend stub_status unreadable before $scen/$target"; a0=""; }
	for pid in "${pids[@]}"; do t0=$((t0 + $(cpu_ticks "$pid"))); done
	o0=$(tw_overflow)
	if ! timeout -k 5 $((HTTP_SECS + 30)) taskset -c "$LOAD_CPU" wrk -c "$HTTP_CONNS" -t "$HTTP_THREADS" \
		-d "${HTTP_SECS}s" --latency "${hdr[@]}" "http://127.0.0.1:$front/" >"$out" 2>&1; then
		warn "wrk $scen via $target failed: $(head -c 300 "$out")"
		return 0
	fi
	for pid in "${pids[@]}"; do
		if alive "$pid"; then t1=$((t1 + $(cpu_ticks "$pid"))); else warn "$target (pid $pid) died during $scen"; put "$key.died" 1; fi
	done
	sleep 1 # let the last closes finish before counting TIME_WAIT
	tw=$(tw_count "$front" "$back")
	o1=$(tw_overflow)
	a1=$(stub_accepts) || a1=""
	parsed=$(python3 - "$out" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
def ms(v, u):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[u]
out = {}
m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),", t, re.M)
if m:
    out["requests"] = int(m.group(1)); out["secs"] = ms(m.group(2), m.group(3)) / 1e3
m = re.search(r"^Requests/sec:\s*([\d.]+)", t, re.M)
if m: out["rps"] = float(m.group(1))
m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", t, re.M)
if m: out["p99_ms"] = ms(m.group(1), m.group(2))
m = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s|m)\s*$", t, re.M)
if m: out["p50_ms"] = ms(m.group(1), m.group(2))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
e = [int(x) for x in m.groups()] if m else [0, 0, 0, 0]
for k, v in zip(("err_connect", "err_read", "err_write", "err_timeout"), e):
    out[k] = v
m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", t)
out["non2xx"] = int(m.group(1)) if m else 0
out["errors"] = sum(e) + out["non2xx"]
for k, v in out.items():
    print(k, v)
EOF
)
	while read -r k v; do put "$key.$k" "$v"; done <<<"$parsed"
	if ((${#pids[@]})); then put "$key.cpu_s" "$(python3 -c "print('%.3f' % (($t1-$t0)/$CLK_TCK))")"; fi
	[[ -n $a0 && -n $a1 ]] && put "$key.backend_conns" "$((a1 - a0 - 1))"
	read -r twc twf twb twk <<<"$tw"
	put "$key.tw_client" "$twc"
	put "$key.tw_front" "$twf"
	put "$key.tw_back" "$twb"
	put "$key.tw_backend" "$twk"
	put "$key.tw_overflow" "$((o1 - o0))"
	((o1 - o0 == 0)) || warn "$scen/$target: the kernel dropped $((o1 - o0)) TIME_WAIT sockets (tcp_max_tw_buckets $(cat /proc/sys/net/ipv4/tcp_max_tw_buckets) reached): its TIME_WAIT counts are lower bounds"
	log "wrk $scen $target: $(awk '/^Requests\/sec/ {print $2}' "$out") req/s, p99 $(awk '$1 == "99%" {print $2}' "$out"), backend conns $([[ -n $a0 && -n $a1 ]] && echo $((a1 - a0 - 1)) || echo '?'), TIME_WAIT client/front/back/backend $twc/$twf/$twb/$twk$(grep -E 'Socket errors|Non-2xx' "$out" | tr -s ' \n' ' ' | sed 's/^/, /')"
}

# ---------------------------------------------------------------- 4c, 7c: idle keepalive
# What an idle keepalive client conn costs each proxy: a fresh proxy process
# (section 4's http config, or section 7's https one), its own front and
# backend ports, IDLE_KA_N clients that each do one GET / and then stay idle.
# Numbers go to $RESULTS as idleka.PROTO.KIND.*.
KA_KINDS=(haproxy nginx tether)
KA_SETTLE=2 # seconds idle after the last response, before the RSS reading
KA_TLS=$tmp/idleka-tls.txt # "PROTO.KIND<TAB>what idleconns negotiated" (https)
: >"$KA_TLS"

# sum_rss PID...: VmRSS summed, in kB. sum_fds PID...: open fds summed.
sum_rss() { local pid n=0; for pid in "$@"; do n=$((n + $(rss_kb "$pid"))); done; echo "$n"; }
sum_fds() { local pid n=0; for pid in "$@"; do n=$((n + $(ls "/proc/$pid/fd" | wc -l))); done; echo "$n"; }

# start_ka_proxy PROTO KIND FRONT:BACK: a fresh KIND proxy (http or https) on
# CPU $PROXY_CPU; sets KA_PID (what to stop) and KA_PIDS (whose memory counts:
# nginx's master and worker). Returns 1 when it did not start.
start_ka_proxy() {
	local proto=$1 kind=$2 pair=$3 tag="ka-$1-$2" cfg
	KA_PID="" KA_PIDS=()
	case $kind in
	haproxy)
		cfg=$tmp/$tag.cfg
		if [[ $proto == https ]]; then haproxy_https_cfg "$cfg" "$TLS_DIR/combined.pem" "$pair"; else haproxy_http_cfg "$cfg" "$pair"; fi
		if ! haproxy -c -q -f "$cfg" >"$tmp/$tag.check" 2>&1; then
			warn "haproxy rejects its $proto config:"; sed 's/^/    /' "$tmp/$tag.check" >&2
			return 1
		fi
		start_bg "$tag" taskset -c "$PROXY_CPU" haproxy -db -f "$cfg"
		;;
	nginx)
		mkdir -p "$tmp/$tag/logs"
		chmod 755 "$tmp" # nginx workers run as nobody
		if [[ $proto == https ]]; then
			nginx_proxy_cfg "$tmp/$tag" --tls "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem" "$pair"
		else
			nginx_proxy_cfg "$tmp/$tag" "$pair"
		fi
		start_nginx "$tag" "$tmp/$tag" "$PROXY_CPU" || return 1
		;;
	tether)
		[[ -n $TETHER ]] || return 1
		cfg=$tmp/$tag.toml
		if [[ $proto == https ]]; then
			tether_https_cfg "$cfg" "${TETHER_HTTP_LOG:-warn}" "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem" "$pair"
		else
			tether_http_cfg "$cfg" "${TETHER_HTTP_LOG:-warn}" "$pair"
		fi
		if ! "$TETHER" check -c "$cfg" >"$tmp/$tag.check" 2>&1; then
			warn "tether check rejects its $proto config:"; sed 's/^/    /' "$tmp/$tag.check" >&2
			return 1
		fi
		start_bg "$tag" env GOMAXPROCS=1 taskset -c "$PROXY_CPU" "$TETHER" run -c "$cfg"
		;;
	esac
	if ! wait_listen "$BG_PID" "${pair%%:*}" || ! alive "$BG_PID"; then
		warn "$kind ($proto) did not start; its log:"; tail -n 20 "$tmp/$tag.log" "$tmp/$tag/error.log" 2>/dev/null | sed 's/^/    /' >&2
		if [[ $kind == nginx ]]; then stop_nginx "$BG_PID"; else stop_pid "$BG_PID"; fi
		return 1
	fi
	KA_PID=$BG_PID KA_PIDS=("$BG_PID")
	if [[ $kind == nginx ]]; then
		nginx_workers "$KA_PID" || true
		KA_PIDS=("${NGINX_PIDS[@]}")
	fi
}
stop_ka_proxy() { # stop_ka_proxy KIND
	if [[ $1 == nginx ]]; then stop_nginx "$KA_PID"; else stop_pid "$KA_PID"; fi
}

# measure_idle_ka PROTO KIND BACK: IDLE_KA_N idle keepalive client conns
# (https: TLS with section 7's certificate) through a fresh KIND proxy to the
# backend port BACK, then IDLE_KA_N more: the first batch's RSS includes
# what a fresh proxy touches once (code pages, pools, runtime warm-up), the
# second's is the marginal cost of a conn.
measure_idle_ka() {
	local proto=$1 kind=$2 back=$3 key="idleka.$1.$2" name="idleka-$1-$2" front cpid cpid2 rss0 rss1 rss2 fds0 fds1 bconns closed closed2 pid
	local args=(-stdin=false -n "$IDLE_KA_N" -timeout 60s -request /)
	[[ $proto == https ]] && args+=(-cacert "$TLS_DIR/cert.pem")
	front=$(pick_port)
	start_ka_proxy "$proto" "$kind" "$front:$back" || { warn "$kind unavailable for the $proto idle keepalive test"; return 0; }
	sleep 1 # started and settled: the baseline
	rss0=$(sum_rss "${KA_PIDS[@]}") fds0=$(sum_fds "${KA_PIDS[@]}")
	start_bg "$name" taskset -c "$LOAD_CPU" "$IDLECONNS" "${args[@]}" -connect "127.0.0.1:$front"
	cpid=$BG_PID
	if ! wait_until 70 "$IDLE_KA_N $proto keepalive clients via $kind" \
		bash -c "grep -q '^ready' '$tmp/$name.log' || ! kill -0 $cpid 2>/dev/null" ||
		! grep -q '^ready' "$tmp/$name.log"; then
		warn "$proto keepalive clients via $kind failed: $(tail -n 3 "$tmp/$name.log")"
		stop_pid "$cpid"; stop_ka_proxy "$kind"
		return 0
	fi
	sleep "$KA_SETTLE"
	for pid in "${KA_PIDS[@]}"; do
		alive "$pid" || { warn "$kind ($proto, pid $pid) died holding idle conns"; put "$key.died" 1; stop_pid "$cpid"; stop_ka_proxy "$kind"; return 0; }
	done
	rss1=$(sum_rss "${KA_PIDS[@]}") fds1=$(sum_fds "${KA_PIDS[@]}")
	# the proxy's side of its conns to the backend port (ss lists both ends of a loopback conn)
	bconns=$(ss -Htn state established "( dport = :$back )" 2>/dev/null | wc -l)
	# The second batch, on top of the first.
	start_bg "$name-2" taskset -c "$LOAD_CPU" "$IDLECONNS" "${args[@]}" -connect "127.0.0.1:$front"
	cpid2=$BG_PID
	rss2=""
	if wait_until 70 "$IDLE_KA_N more $proto keepalive clients via $kind" \
		bash -c "grep -q '^ready' '$tmp/$name-2.log' || ! kill -0 $cpid2 2>/dev/null" &&
		grep -q '^ready' "$tmp/$name-2.log"; then
		sleep "$KA_SETTLE"
		alive "${KA_PIDS[0]}" && rss2=$(sum_rss "${KA_PIDS[@]}")
	else
		warn "the second batch of $proto keepalive clients via $kind failed: $(tail -n 3 "$tmp/$name-2.log")"
	fi
	closed=$(awk '/^closed/ {n=$2} END {print n+0}' "$tmp/$name.log")
	closed2=$(awk '/^closed/ {n=$2} END {print n+0}' "$tmp/$name-2.log")
	((closed2 == 0)) || warn "$kind ($proto) closed $closed2 of the second batch's conns before the reading: its marginal figure is low"
	((closed == 0)) || warn "$kind ($proto) closed $closed of the $IDLE_KA_N idle keepalive conns before the reading: its figure is low"
	put "$key.n" "$IDLE_KA_N"
	put "$key.rss0_kb" "$rss0"
	put "$key.rss1_kb" "$rss1"
	put "$key.kib_per_conn" "$(python3 -c "print('%.2f' % (($rss1 - $rss0) / $IDLE_KA_N))")"
	if [[ -n $rss2 ]] && ((closed2 == 0)); then
		put "$key.rss2_kb" "$rss2"
		put "$key.marginal_kib_per_conn" "$(python3 -c "print('%.2f' % (($rss2 - $rss1) / $IDLE_KA_N))")"
	fi
	put "$key.fds0" "$fds0"
	put "$key.fds1" "$fds1"
	put "$key.fds_per_conn" "$(python3 -c "print('%.2f' % (($fds1 - $fds0) / $IDLE_KA_N))")"
	put "$key.backend_conns" "$bconns"
	put "$key.closed" "$closed"
	awk -v k="$proto.$kind" '$1 == "tls" {$1 = ""; sub(/^ /, ""); print k "\t" $0}' "$tmp/$name.log" >>"$KA_TLS"
	log "$kind $proto idle keepalive: RSS $rss0 kB -> $rss1 kB, fds $fds0 -> $fds1 for $IDLE_KA_N conns = $(python3 -c "print('%.1f' % (($rss1 - $rss0) / $IDLE_KA_N))") KiB/conn; $IDLE_KA_N more: RSS ${rss2:-n/a} kB$([[ -n $rss2 ]] && python3 -c "print(' = %.1f KiB/conn' % (($rss2 - $rss1) / $IDLE_KA_N))"); backend conns held $bconns$(awk '$1 == "tls" {$1 = ""; print "; negotiated" $0}' "$tmp/$name.log")"
	stop_pid "$cpid2"
	stop_pid "$cpid"
	stop_ka_proxy "$kind"
}

# ---------------------------------------------------------------- 5, 6: tether bench
# Section 5 (tether bench --compare through tether and direct) runs at the end
# of the HTTP targets, 6 (load generator check) after them: their TIME_WAIT
# sockets (tens of thousands) then cannot push the wrk runs above into
# tcp_max_tw_buckets.
TB_CONNS=20 LG_LONG_CONNS=50 LG_SHORT_CONNS=20
# Runs NAME.rREP. The short runs last about a second: three of each,
# alternating, and the best of each counts (a busy host only ever slows a run).
LG_SHORT_REPS=3
LG_RUNS=(long_tether.r1 long_wrk.r1)
for ((i = 1; i <= LG_SHORT_REPS; i++)); do
	if ((!HAVE_AB)); then LG_RUNS+=("short_tether.r$i"); elif ((i % 2)); then LG_RUNS+=("short_tether.r$i" "short_ab.r$i"); else LG_RUNS+=("short_ab.r$i" "short_tether.r$i"); fi
done
LG_RUNS+=(shortc_tether.r1)

# $tmp/cpu_of.py FILE CMD...: run CMD, then write "CPU-seconds wall-seconds"
# to FILE: the user+sys time CMD and its descendants used, and how long it ran;
# exits with CMD's status. SIGTERM or SIGINT is passed on to CMD as SIGTERM (CMD
# is `timeout`, which passes it on).
cat >"$tmp/cpu_of.py" <<'EOF'
import resource, signal, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
def fwd(sig, frame):
    p.send_signal(signal.SIGTERM)
signal.signal(signal.SIGTERM, fwd)
signal.signal(signal.SIGINT, fwd)
rc = p.wait()
wall = time.monotonic() - t0
r = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    f.write("%.3f %.3f\n" % (r.ru_utime + r.ru_stime, wall))
sys.exit(rc if rc >= 0 else 128 - rc)
EOF

# run_load NAME LIMIT CMD...: CMD under `timeout LIMIT`, in the background so
# that the trap can stop it; stdout to $tmp/NAME.out, stderr to $tmp/NAME.err,
# "CPU-seconds wall-seconds" to $tmp/NAME.cpu. Returns CMD's status.
run_load() {
	local name=$1 limit=$2 pid rc=0
	shift 2
	python3 "$tmp/cpu_of.py" "$tmp/$name.cpu" timeout -k 5 "$limit" "$@" \
		>"$tmp/$name.out" 2>"$tmp/$name.err" </dev/null &
	pid=$!
	PIDS+=("$pid")
	wait "$pid" || rc=$?
	return "$rc"
}

# cpu_us: "user+nice+system ticks, all ticks" of CPU PROXY_CPU then LOAD_CPU (/proc/stat).
cpu_us() {
	awk -v a="cpu$PROXY_CPU" -v b="cpu$LOAD_CPU" '
		$1 == a || $1 == b { u[$1] = $2 + $3 + $4; t[$1] = $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }
		END { print u[a], t[a], u[b], t[b] }' /proc/stat
}
# backend_worker_ticks: utime+stime of the backend nginx's workers.
backend_worker_ticks() {
	local n=0 pid
	for pid in "${BACKEND_WORKERS[@]}"; do n=$((n + $(cpu_ticks "$pid" 2>/dev/null || echo 0))); done
	echo "$n"
}
# pin_backend CPU: move the backend nginx (master, workers, all threads) to CPU.
pin_backend() {
	local pid ok=0
	for pid in "$BACKEND_PID" "${BACKEND_WORKERS[@]}"; do
		taskset -a -p -c "$1" "$pid" >/dev/null 2>&1 || ok=1
	done
	return "$ok"
}

# parse_load KIND OUT: "key value" lines from a load generator's output.
# KIND: tether (tether bench --json, one result), wrk, ab.
parse_load() {
	python3 - "$1" "$2" <<'EOF'
import json, re, sys
kind, path = sys.argv[1], sys.argv[2]
t = open(path).read()
o = {}
if kind == "tether":
    r = json.loads(t)["results"][0]
    o.update(requests=r["requests"], secs=r["duration_ns"] / 1e9, rps=r["rps"],
             errors=sum(r.get("errors", {}).values()), conns_opened=r["conns_opened"],
             ports_used=r["ports_used"], tw_client=r["time_wait_client"], tw_target=r["time_wait_target"],
             p50_ms=r["latency"]["p50_ns"] / 1e6, p99_ms=r["latency"]["p99_ns"] / 1e6,
             closed_by_client=r["closed_by_client"], closed_by_server=r["closed_by_server"],
             tw_error=1 if r.get("time_wait_error") else 0)
elif kind == "wrk":
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),", t, re.M)
    if m:
        o["requests"] = int(m.group(1))
        o["secs"] = float(m.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    m = re.search(r"^Requests/sec:\s*([\d.]+)", t, re.M)
    if m: o["rps"] = float(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    e = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", t)
    o["errors"] = e + (int(m.group(1)) if m else 0)
elif kind == "ab":
    for key, pat in (("requests", r"^Complete requests:\s*(\d+)"), ("secs", r"^Time taken for tests:\s*([\d.]+)"),
                     ("rps", r"^Requests per second:\s*([\d.]+)"), ("failed", r"^Failed requests:\s*(\d+)"),
                     ("non2xx", r"^Non-2xx responses:\s*(\d+)")):
        m = re.search(pat, t, re.M)
        if m: o[key] = float(m.group(1))
    o["errors"] = o.pop("failed", 0) + o.pop("non2xx", 0)
for k, v in o.items():
    print(k, v)
EOF
}

# lg_run RUN PORT: one run of the load generator check (section 6) against
# the backend nginx on PORT; the load generator alone on LOAD_CPU.
lg_run() {
	local run=$1 url="http://127.0.0.1:$2/" key="lg.$1" name="lg-$1" kind=tether s0 s1 n0 n1 o0 o1 rc=0 cpu wall parsed k v
	local tb=(env GOMAXPROCS=1 taskset -c "$LOAD_CPU" "$TETHER" bench --json)
	s0=$(cpu_us) n0=$(backend_worker_ticks) o0=$(tw_overflow)
	case ${run%.r*} in
	long_tether) run_load "$name" $((LG_SECS + 30)) "${tb[@]}" --conn long -c "$LG_LONG_CONNS" -d "${LG_SECS}s" "$url" || rc=$? ;;
	long_wrk) kind=wrk; run_load "$name" $((LG_SECS + 30)) taskset -c "$LOAD_CPU" wrk -c "$LG_LONG_CONNS" -t 1 -d "${LG_SECS}s" "$url" || rc=$? ;;
	short_tether) run_load "$name" 120 "${tb[@]}" --conn short --close server -c "$LG_SHORT_CONNS" -n "$LG_N" "$url" || rc=$? ;;
	short_ab) kind=ab; run_load "$name" 120 taskset -c "$LOAD_CPU" ab -n "$LG_N" -c "$LG_SHORT_CONNS" "$url" || rc=$? ;;
	shortc_tether) run_load "$name" 120 "${tb[@]}" --conn short --close client -c "$LG_SHORT_CONNS" -n "$LG_N" "$url" || rc=$? ;;
	esac
	s1=$(cpu_us) n1=$(backend_worker_ticks) o1=$(tw_overflow)
	if ((rc)); then
		warn "load generator check $run failed (exit $rc): $(head -c 300 "$tmp/$name.err") $(head -c 300 "$tmp/$name.out")"
		return 0
	fi
	parsed=$(parse_load "$kind" "$tmp/$name.out") || { warn "load generator check $run: unreadable output: $(head -c 300 "$tmp/$name.out")"; return 0; }
	while read -r k v; do put "$key.$k" "$v"; done <<<"$parsed"
	read -r cpu wall <"$tmp/$name.cpu"
	put "$key.gen_cpu_s" "$cpu"
	put "$key.wall_s" "$wall"
	put "$key.tw_overflow" "$((o1 - o0))"
	put "$key.nginx_cpu_s" "$(python3 -c "print('%.3f' % (($n1 - $n0) / $CLK_TCK))")"
	# the share of each CPU that neither the load generator nor nginx took (user+system)
	read -r k v <<<"$(python3 -c 'import sys
a = list(map(int, sys.argv[1].split())); b = list(map(int, sys.argv[2].split())); gen, ngx, tck = float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
f0 = max(0.0, (b[0] - a[0] - ngx) / max(1, b[1] - a[1]))
f1 = max(0.0, (b[2] - a[2] - gen * tck) / max(1, b[3] - a[3]))
print("%.3f %.3f" % (f0, f1))' "$s0" "$s1" "$cpu" "$((n1 - n0))" "$CLK_TCK")"
	put "$key.foreign_server_cpu" "$k"
	put "$key.foreign_load_cpu" "$v"
	if python3 -c 'import sys; sys.exit(0 if max(map(float, sys.argv[1:])) > 0.05 else 1)' "$k" "$v"; then
		warn "load generator check $run: other processes took ${k} of CPU $PROXY_CPU / ${v} of CPU $LOAD_CPU: disturbed (busy host?)"
	fi
	log "load generator check $run: $(awk '$1 == "rps" {printf "%.0f req/s", $2}' <<<"$parsed"), $(awk '$1 == "requests" {printf "%d requests", $2}' <<<"$parsed"), generator CPU ${cpu}s"
}

# run_loadgen_check: section 6, with the backend nginx moved to PROXY_CPU alone.
run_loadgen_check() {
	local run pinned=0
	if [[ -z $TETHER ]]; then warn "no tether binary: load generator check skipped"; return 0; fi
	if ((PROXY_CPU != LOAD_CPU)); then
		if pin_backend "$PROXY_CPU"; then pinned=1; else warn "could not move the backend nginx to CPU $PROXY_CPU: it shares CPU $LOAD_CPU with the load generator"; fi
	fi
	local server_cpu=$LOAD_CPU
	((pinned)) && server_cpu=$PROXY_CPU
	put lg.server_cpu "$server_cpu"
	sleep 0.2
	log "load generator check: nginx on CPU $server_cpu, load generator on CPU $LOAD_CPU; long ${LG_SECS}s, short -n $LG_N"
	for run in "${LG_RUNS[@]}"; do
		lg_run "$run" "${LGPORT[$run]}"
		sleep 0.5
	done
	if ((pinned)); then pin_backend "$LOAD_CPU" || true; fi
	return 0
}

# run_tb TARGET PORT: section 5, tether bench --compare to PORT (tether's
# pooled virtual server, or the backend nginx for direct).
run_tb() {
	local target=$1 port=$2 name="tb-$1" a0 a1 o0 o1 rc=0 side k v
	[[ -n $TETHER ]] || return 0
	a0=$(stub_accepts) || a0=""
	o0=$(tw_overflow)
	run_load "$name" $((2 * TB_SECS + 60)) env GOMAXPROCS=1 taskset -c "$LOAD_CPU" "$TETHER" bench --compare \
		-c "$TB_CONNS" -d "${TB_SECS}s" --json "http://127.0.0.1:$port/" || rc=$?
	a1=$(stub_accepts) || a1=""
	o1=$(tw_overflow)
	put "tb.$target.tw_overflow" "$((o1 - o0))"
	if ((rc)); then
		warn "tether bench --compare via $target failed (exit $rc): $(head -c 300 "$tmp/$name.err")"
		return 0
	fi
	for side in 0 1; do
		python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); d["results"] = [d["results"][int(sys.argv[2])]]; json.dump(d, open(sys.argv[3], "w"))' \
			"$tmp/$name.out" "$side" "$tmp/$name.$side.json"
		local conn
		conn=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["results"][0]["conn"])' "$tmp/$name.$side.json")
		while read -r k v; do put "tb.$target.$conn.$k" "$v"; done < <(parse_load tether "$tmp/$name.$side.json")
	done
	put "tb.$target.gen_cpu_s" "$(cut -d' ' -f1 "$tmp/$name.cpu")"
	if [[ -n $a0 && -n $a1 ]]; then put "tb.$target.backend_conns" "$((a1 - a0 - 1))"; fi
	log "tether bench --compare $target: $(python3 -c 'import json, sys; print(", ".join("%s %.0f req/s, TIME_WAIT client/target %d/%d" % (r["conn"], r["rps"], r["time_wait_client"], r["time_wait_target"]) for r in json.load(open(sys.argv[1]))["results"]))' "$tmp/$name.out"), backend conns $([[ -n $a0 && -n $a1 ]] && echo $((a1 - a0 - 1)) || echo '?')"
}

if ((RUN_HTTP)); then
	declare -A HFRONT HBACK LGPORT KABACK
	RUN_TARGETS=()
	((RUN_HTTP_TARGETS)) && RUN_TARGETS=("${HTTP_TARGETS[@]}")
	RUN_TB=0
	((RUN_HTTP_TARGETS)) && [[ -n $TETHER ]] && RUN_TB=1
	for t in "${HTTP_TARGETS[@]}"; do
		[[ $t == direct ]] || ((RUN_HTTP_TARGETS)) || continue
		for s in "${HTTP_SCENARIOS[@]}"; do
			HBACK[$t.$s]=$(pick_port)
			if [[ $t == direct ]]; then HFRONT[$t.$s]=${HBACK[$t.$s]}; else HFRONT[$t.$s]=$(pick_port); fi
		done
	done
	if ((RUN_TB)); then # section 5: its own ports, cold pool
		HBACK[direct.tb]=$(pick_port) HFRONT[direct.tb]=${HBACK[direct.tb]}
		HBACK[tether.tb]=$(pick_port) HFRONT[tether.tb]=$(pick_port)
	fi
	if ((RUN_LOADGEN)); then # section 6: one port per run
		for r in "${LG_RUNS[@]}"; do LGPORT[$r]=$(pick_port); done
	fi
	if ((RUN_KA_HTTP)); then # 4c: a backend port per proxy
		for k in "${KA_KINDS[@]}"; do KABACK[$k]=$(pick_port); done
	fi
	STUB_PORT=$(pick_port)
	mkdir -p "$tmp/nginx-backend/logs" "$tmp/nginx-proxy/logs"
	chmod 755 "$tmp" # nginx workers run as nobody
	nginx_backend_cfg "$tmp/nginx-backend" "$STUB_PORT" "${HBACK[@]}" "${LGPORT[@]}" "${KABACK[@]}"
	log "http: nginx backend on CPU $LOAD_CPU (ports ${HBACK[*]} ${LGPORT[*]} ${KABACK[*]}, stub_status :$STUB_PORT); wrk -c $HTTP_CONNS -t $HTTP_THREADS -d ${HTTP_SECS}s"
	if start_nginx nginx-backend "$tmp/nginx-backend" "$LOAD_CPU" &&
		BACKEND_PID=$BG_PID && wait_listen "$BACKEND_PID" "${HBACK[@]}" "${LGPORT[@]}" "${KABACK[@]}" "$STUB_PORT" && nginx_workers "$BACKEND_PID"; then
		BACKEND_WORKERS=("${NGINX_PIDS[@]:1}")
		got=$(python3 -c 'import sys, urllib.request; print(len(urllib.request.urlopen("http://127.0.0.1:%s/" % sys.argv[1], timeout=3).read()))' "${HBACK[direct.ka]}" 2>&1) || true
		[[ $got == 64 ]] || warn "the backend's body is '$got' bytes, not 64"
		for t in "${RUN_TARGETS[@]}"; do
			pairs=()
			for s in "${HTTP_SCENARIOS[@]}"; do pairs+=("${HFRONT[$t.$s]}:${HBACK[$t.$s]}"); done
			[[ $t == tether ]] && ((RUN_TB)) && pairs+=("${HFRONT[tether.tb]}:${HBACK[tether.tb]}")
			fronts=("${pairs[@]%%:*}")
			ppids=() ppid=""
			case $t in
			direct) ;;
			haproxy)
				haproxy_http_cfg "$tmp/haproxy-http.cfg" "${pairs[@]}"
				if haproxy -c -q -f "$tmp/haproxy-http.cfg" >"$tmp/haproxy-http.check" 2>&1; then
					start_bg haproxy-http taskset -c "$PROXY_CPU" haproxy -db -f "$tmp/haproxy-http.cfg"
					ppid=$BG_PID ppids=("$BG_PID")
				else
					warn "haproxy rejects its http config:"; sed 's/^/    /' "$tmp/haproxy-http.check" >&2
				fi
				;;
			nginx)
				nginx_proxy_cfg "$tmp/nginx-proxy" "${pairs[@]}"
				if start_nginx nginx-proxy "$tmp/nginx-proxy" "$PROXY_CPU"; then ppid=$BG_PID; fi
				;;
			tether)
				if [[ -n $TETHER ]]; then
					tether_http_cfg "$tmp/tether-http.toml" "${TETHER_HTTP_LOG:-warn}" "${pairs[@]}"
					if "$TETHER" check -c "$tmp/tether-http.toml" >"$tmp/tether-http.check" 2>&1; then
						start_bg tether-http env GOMAXPROCS=1 taskset -c "$PROXY_CPU" "$TETHER" run -c "$tmp/tether-http.toml"
						ppid=$BG_PID ppids=("$BG_PID")
					else
						warn "tether check rejects its http config:"; sed 's/^/    /' "$tmp/tether-http.check" >&2
					fi
				fi
				;;
			esac
			if [[ $t != direct ]]; then
				if [[ -z $ppid ]]; then warn "$t unavailable for the HTTP tests"; continue; fi
				if ! wait_listen "$ppid" "${fronts[@]}" || ! alive "$ppid"; then
					warn "$t did not start; its log:"; tail -n 20 "$tmp/$t-http.log" "$tmp/nginx-proxy/error.log" 2>/dev/null | sed 's/^/    /' >&2
					stop_pid "$ppid"
					continue
				fi
				if [[ $t == nginx ]]; then
					nginx_workers "$ppid" || true
					ppids=("${NGINX_PIDS[@]}")
				fi
				sleep 0.3
			fi
			for s in "${HTTP_SCENARIOS[@]}"; do
				run_wrk "$t" "$s" "${HFRONT[$t.$s]}" "${HBACK[$t.$s]}" "${ppids[@]}"
			done
			if [[ $t == tether ]] && ((RUN_TB)); then
				run_tb tether "${HFRONT[tether.tb]}"
				alive "$ppid" || warn "tether died during tether bench --compare: $(tail -n 5 "$tmp/tether-http.log")"
			fi
			case $t in
			direct) ;;
			nginx) stop_nginx "$ppid" ;;
			*) stop_pid "$ppid" ;;
			esac
		done
		if ((RUN_KA_HTTP)); then
			log "4c: $IDLE_KA_N idle keepalive client conns (one GET / each, then idle ${KA_SETTLE}s) through a fresh proxy each"
			for k in "${KA_KINDS[@]}"; do measure_idle_ka http "$k" "${KABACK[$k]}"; done
		fi
		if ((RUN_TB)); then run_tb direct "${HFRONT[direct.tb]}"; fi
		if ((RUN_LOADGEN)); then run_loadgen_check; fi
		alive "$BACKEND_PID" || warn "the backend nginx died: $(tail -n 5 "$tmp/nginx-backend/error.log")"
		stop_nginx "$BACKEND_PID"
	else
		warn "the nginx backend did not start; HTTP scenarios skipped: $(tail -n 5 "$tmp/nginx-backend.log" "$tmp/nginx-backend/error.log" 2>/dev/null)"
	fi
fi

# ---------------------------------------------------------------- 7: https
# HAProxy and tether terminate TLS (same ECDSA P-256 certificate, TLS 1.3)
# and forward plain HTTP/1.1 to their own nginx backend port. Numbers go to
# $RESULTS under "tls."; the strings (what was negotiated, why tether could
# not run) to $TLS_INFO as "key<TAB>text".
HS_CONNS=20 HTTPS_CONNS=50 HTTPS_THREADS=2
TLS_INFO=$tmp/tls-info.txt
: >"$TLS_INFO"
info() { printf '%s\t%s\n' "$1" "$2" >>"$TLS_INFO"; } # info KEY TEXT

# make_tls_cert DIR: a self-signed ECDSA P-256 certificate for 127.0.0.1
# (its own CA for the clients): DIR/cert.pem, DIR/key.pem, and
# DIR/combined.pem (both, for HAProxy's crt).
make_tls_cert() {
	local dir=$1
	mkdir -p "$dir"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -nodes -days 30 \
		-subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
		-keyout "$dir/key.pem" -out "$dir/cert.pem" >"$dir/openssl.log" 2>&1 || return 1
	cat "$dir/cert.pem" "$dir/key.pem" >"$dir/combined.pem"
	chmod 644 "$dir"/*.pem
}

# haproxy_https_cfg FILE COMBINED_PEM FRONT:BACK: section 4's http proxy,
# terminating TLS 1.3 pinned to X25519 and TLS_AES_128_GCM_SHA256 (what
# tether's Go TLS picks for clients that prefer AES-GCM, as both load
# generators here do).
haproxy_https_cfg() {
	local file=$1 pem=$2 pair=$3
	cat >"$file" <<EOF
global
    nbthread 1
    maxconn $HAPROXY_MAXCONN
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256
    ssl-default-bind-curves X25519

defaults
    mode http
    option http-keep-alive
    http-reuse safe
    maxconn $HAPROXY_MAXCONN
    timeout connect 3s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    timeout http-request 10s

listen s1
    bind 127.0.0.1:${pair%%:*} ssl crt $pem alpn http/1.1
    server s1 127.0.0.1:${pair##*:}
EOF
}

# tether_https_cfg FILE LOGLEVEL CERT KEY FRONT:BACK: section 4's http
# virtual server with [virtual_server.tls], TLS 1.3 only.
tether_https_cfg() {
	local file=$1 cert=$3 key=$4
	tether_http_cfg "$file" "$2" "$5"
	cat >>"$file" <<EOF

[virtual_server.tls]
certificates = [ { cert = "$cert", key = "$key" } ]
min_version = "1.3"
EOF
}

# tls_probe KIND PORT: what a client with OpenSSL's defaults (as wrk has)
# negotiates with the proxy: version, cipher suite, key exchange, ALPN.
tls_probe() {
	local kind=$1 port=$2 out=$tmp/tls-probe-$1.txt
	timeout 10 openssl s_client -connect "127.0.0.1:$port" -alpn http/1.1 -CAfile "$TLS_DIR/cert.pem" </dev/null >"$out" 2>&1 || true
	info "probe.$kind" "$(python3 - "$out" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
def f(p):
    m = re.search(p, t, re.M)
    return m.group(1) if m else "?"
ver = f(r"^New, (TLSv[\d.]+),")
print(" / ".join([{"TLSv1.3": "TLS 1.3", "TLSv1.2": "TLS 1.2"}.get(ver, ver), f(r"Cipher is (\S+)"),
                  f(r"Server Temp Key: ([^,\s]+)"), f(r"^ALPN protocol: (\S+)"), "verify " + f(r"Verify return code: \d+ \(([^)]*)\)")]))
EOF
)"
}

# https_handshakes KIND PORT PROXY_PID: 7a, short connections, one request
# each, every handshake a full one.
https_handshakes() {
	local kind=$1 port=$2 ppid=$3 key="tls.hs.$1" name="tls-hs-$1" t0 t1 s0 s1 rc=0 k v
	t0=$(cpu_ticks "$ppid") s0=$(cpu_stat)
	run_load "$name" $((HTTPS_SECS + 60)) env GOMAXPROCS=1 taskset -c "$LOAD_CPU" "$TETHER" bench --conn short \
		-c "$HS_CONNS" -d "${HTTPS_SECS}s" --tls-min 1.3 --tls-groups x25519 --cacert "$TLS_DIR/cert.pem" --json \
		"https://127.0.0.1:$port/" || rc=$?
	if ! alive "$ppid"; then warn "$kind died during the handshake run"; put "$key.died" 1; return 0; fi
	t1=$(cpu_ticks "$ppid") s1=$(cpu_stat)
	if ((rc)); then
		warn "tether bench (handshakes) via $kind failed (exit $rc): $(head -c 300 "$tmp/$name.err")"
		return 0
	fi
	put_cpu_util "$key" "$s0" "$s1" "$((t1 - t0))"
	put "$key.cpu_s" "$(python3 -c "print('%.3f' % (($t1-$t0)/$CLK_TCK))")"
	while IFS=$'\t' read -r k v; do
		case $k in
		s.*) info "hs.$kind.${k#s.}" "$v" ;;
		*) put "$key.$k" "$v" ;;
		esac
	done < <(python3 - "$tmp/$name.out" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
t = r.get("tls") or {}
h = t.get("handshake", {})
nums = dict(requests=r["requests"], ok=r["ok"], errors=sum(r["errors"].values()), rps=r["rps"], secs=r["duration_ns"] / 1e9,
            handshakes=t.get("handshakes", 0), resumed=t.get("resumed", 0), hs_per_s=t.get("handshakes_per_s", 0),
            hs_p50_ms=h.get("p50_ns", 0) / 1e6, hs_p99_ms=h.get("p99_ns", 0) / 1e6, p99_ms=r["latency"]["p99_ns"] / 1e6,
            conns_opened=r["conns_opened"], gen_cpu_s=r.get("cpu_ns", 0) / 1e9)
for k, v in nums.items():
    print(f"{k}\t{v}")
print("s.negotiated\t" + " / ".join([t.get("version") or "?", t.get("cipher_suite") or "?", t.get("group") or "?", t.get("alpn") or "?"]))
errs = dict(r["errors"])
for m, n in (t.get("errors") or {}).items():
    errs.pop("tls", None)
    print(f"s.tls_error\t{n} x {m}")
if errs:
    print("s.errors\t" + ", ".join(f"{k} {v}" for k, v in errs.items()))
EOF
)
	log "handshakes $kind: $(awk '$1 == "'"$key"'.hs_per_s" {printf "%.0f/s", $2}' "$RESULTS"), proxy CPU $(awk '$1 == "'"$key"'.cpu_s" {print $2}' "$RESULTS") s, negotiated $(awk -F'\t' '$1 == "hs.'"$kind"'.negotiated" {print $2}' "$TLS_INFO")"
}

# https_keepalive KIND PORT PROXY_PID: 7b, wrk over https, keepalive.
https_keepalive() {
	local kind=$1 port=$2 ppid=$3 key="tls.ka.$1" out=$tmp/tls-wrk-$1.txt t0 t1 s0 s1 k v
	t0=$(cpu_ticks "$ppid") s0=$(cpu_stat)
	if ! timeout -k 5 $((HTTPS_SECS + 30)) taskset -c "$LOAD_CPU" wrk -c "$HTTPS_CONNS" -t "$HTTPS_THREADS" \
		-d "${HTTPS_SECS}s" --latency "https://127.0.0.1:$port/" >"$out" 2>&1; then
		warn "wrk over https via $kind failed: $(head -c 300 "$out")"
		return 0
	fi
	if ! alive "$ppid"; then warn "$kind died during wrk"; put "$key.died" 1; return 0; fi
	t1=$(cpu_ticks "$ppid") s1=$(cpu_stat)
	put_cpu_util "$key" "$s0" "$s1" "$((t1 - t0))"
	put "$key.cpu_s" "$(python3 -c "print('%.3f' % (($t1-$t0)/$CLK_TCK))")"
	while read -r k v; do put "$key.$k" "$v"; done < <(parse_load wrk "$out")
	v=$(python3 - "$out" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", t, re.M)
print(float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)] if m else "")
EOF
)
	[[ -n $v ]] && put "$key.p99_ms" "$v"
	log "wrk https $kind: $(awk '/^Requests\/sec/ {print $2}' "$out") req/s, proxy CPU $(python3 -c "print('%.2f' % (($t1-$t0)/$CLK_TCK))") s$(grep -E 'Socket errors|Non-2xx' "$out" | tr -s ' \n' ' ' | sed 's/^/, /')"
}

# run_https: section 7.
run_https() {
	local kind pair ppid back stub dir=$tmp/nginx-https
	if [[ -z $TETHER ]]; then
		warn "no tether binary: the HTTPS scenarios need it (proxy and handshake load generator); skipped"
		info "tether.unavailable" "tether does not build"
		return 0
	fi
	TLS_DIR=$tmp/tls
	if ! make_tls_cert "$TLS_DIR"; then
		warn "openssl could not make the certificate: $(tail -n 3 "$TLS_DIR/openssl.log")"
		info "tether.unavailable" "no certificate (openssl failed)"
		return 0
	fi
	declare -A TFRONT TBACK KABACK
	for kind in haproxy tether; do TFRONT[$kind]=$(pick_port) TBACK[$kind]=$(pick_port); done
	if ((RUN_KA_HTTPS)); then # 7c: a backend port per proxy
		for kind in "${KA_KINDS[@]}"; do KABACK[$kind]=$(pick_port); done
	fi
	stub=$(pick_port)
	mkdir -p "$dir/logs"
	chmod 755 "$tmp"
	nginx_backend_cfg "$dir" "$stub" "${TBACK[@]}" "${KABACK[@]}"
	if ! start_nginx nginx-https "$dir" "$LOAD_CPU" || ! wait_listen "$BG_PID" "${TBACK[@]}" "${KABACK[@]}"; then
		warn "the HTTPS scenarios' nginx backend did not start: $(tail -n 5 "$tmp/nginx-https.log" "$dir/error.log" 2>/dev/null)"
		return 0
	fi
	back=$BG_PID
	nginx_workers "$back" || true
	log "https: backend nginx on CPU $LOAD_CPU (ports ${TBACK[*]}); handshakes: tether bench --conn short -c $HS_CONNS -d ${HTTPS_SECS}s; keepalive: wrk -c $HTTPS_CONNS -t $HTTPS_THREADS -d ${HTTPS_SECS}s"
	for kind in haproxy tether; do
		pair="${TFRONT[$kind]}:${TBACK[$kind]}" ppid=""
		case $kind in
		haproxy)
			haproxy_https_cfg "$tmp/haproxy-https.cfg" "$TLS_DIR/combined.pem" "$pair"
			if haproxy -c -q -f "$tmp/haproxy-https.cfg" >"$tmp/haproxy-https.check" 2>&1; then
				start_bg haproxy-https taskset -c "$PROXY_CPU" haproxy -db -f "$tmp/haproxy-https.cfg"
				ppid=$BG_PID
			else
				warn "haproxy rejects its https config:"; sed 's/^/    /' "$tmp/haproxy-https.check" >&2
			fi
			;;
		tether)
			tether_https_cfg "$tmp/tether-https.toml" "${TETHER_HTTP_LOG:-warn}" "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem" "$pair"
			if "$TETHER" check -c "$tmp/tether-https.toml" >"$tmp/tether-https.check" 2>&1; then
				start_bg tether-https env GOMAXPROCS=1 taskset -c "$PROXY_CPU" "$TETHER" run -c "$tmp/tether-https.toml"
				ppid=$BG_PID
			else
				warn "tether check REJECTS the HTTPS config ([virtual_server.tls]); tether has no HTTPS figures:"
				sed 's/^/    /' "$tmp/tether-https.check" >&2
				info "tether.unavailable" "tether check rejected [virtual_server.tls]: $(grep -v '^$' "$tmp/tether-https.check" | head -n 2 | tr '\n' ' ')"
			fi
			;;
		esac
		[[ -n $ppid ]] || continue
		if ! wait_listen "$ppid" "${TFRONT[$kind]}" || ! alive "$ppid"; then
			warn "$kind did not start with TLS; its log:"; tail -n 20 "$tmp/$kind-https.log" | sed 's/^/    /' >&2
			[[ $kind == tether ]] && info "tether.unavailable" "tether did not start with TLS: $(tail -n 2 "$tmp/tether-https.log" | tr '\n' ' ')"
			stop_pid "$ppid"
			continue
		fi
		sleep 0.3
		tls_probe "$kind" "${TFRONT[$kind]}"
		if [[ $kind == tether ]] && ! grep -q "^probe.tether	TLS 1.3" "$TLS_INFO"; then
			warn "tether listens on :${TFRONT[$kind]} but does not answer TLS 1.3: $(grep '^probe.tether' "$TLS_INFO" | cut -f2)"
			info "tether.unavailable" "tether does not serve TLS on its https virtual server (openssl s_client: $(grep '^probe.tether' "$TLS_INFO" | cut -f2))"
			stop_pid "$ppid"
			continue
		fi
		https_handshakes "$kind" "${TFRONT[$kind]}" "$ppid"
		sleep 0.5
		https_keepalive "$kind" "${TFRONT[$kind]}" "$ppid"
		stop_pid "$ppid"
	done
	if ((RUN_KA_HTTPS)); then
		log "7c: $IDLE_KA_N idle keepalive TLS client conns (handshake, one GET / each, then idle ${KA_SETTLE}s) through a fresh proxy each"
		for kind in "${KA_KINDS[@]}"; do measure_idle_ka https "$kind" "${KABACK[$kind]}"; done
	fi
	alive "$back" || warn "the HTTPS backend nginx died: $(tail -n 5 "$dir/error.log")"
	stop_nginx "$back"
}

if ((RUN_HTTPS)); then run_https; fi

# ---------------------------------------------------------------- report
mkdir -p bench/results
OUT_JSON=bench/results/compare-$(date +%Y%m%d-%H%M%S).json
python3 - "$RESULTS" "$OUT_JSON" <<EOF
import json, sys, platform, subprocess, datetime
vals = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    vals[k] = float(v)
g = vals.get

def ratio(a, b):
    return round(a / b, 3) if a is not None and b not in (None, 0) else None

def per_cpu(kind, metric, cpu):
    v, c = g(metric), g(cpu)
    return round(v / c, 1) if v is not None and c else None

rows = []
def row(name, unit, d, h, t, better="higher"):
    rows.append(dict(scenario=name, unit=unit, direct=d, haproxy=h, tether=t,
                     tether_haproxy=ratio(t, h), tether_direct=ratio(t, d), better=better))

row("iperf3 1 stream", "Gbit/s", g("iperf.direct.gbps"), g("iperf.haproxy.gbps"), g("iperf.tether.gbps"))
# Gbit moved per proxy CPU-second: Gbit/s * seconds / cpu seconds
def gbit_per_cpu(k):
    v, s, c = g(f"iperf.{k}.gbps"), g(f"iperf.{k}.secs"), g(f"iperf.{k}.cpu_s")
    return round(v * s / c, 2) if None not in (v, s, c) and c > 0 else None
row("iperf3 Gbit per proxy CPU-s", "Gbit/CPU-s", None, gbit_per_cpu("haproxy"), gbit_per_cpu("tether"))
def gbit_per_busy(k):
    v, s, c = g(f"iperf.{k}.gbps"), g(f"iperf.{k}.secs"), g(f"iperf.{k}.cpu_proxy_busy_s")
    return round(v * s / c, 2) if None not in (v, s, c) and c > 0 else None
row("iperf3 Gbit per CPU-$PROXY_CPU busy s", "Gbit/CPU-s", None, gbit_per_busy("haproxy"), gbit_per_busy("tether"))
for op in ("SET", "GET"):
    row(f"redis {op} -c $REDIS_CLIENTS", "req/s", g(f"redis.direct.{op}"), g(f"redis.haproxy.{op}"), g(f"redis.tether.{op}"))
def req_per_cpu(k):
    s, gg, c = g(f"redis.{k}.SET"), g(f"redis.{k}.GET"), g(f"redis.{k}.cpu_s")
    return round(2 * $REDIS_N / c) if None not in (s, gg, c) and c > 0 else None
row("redis req per proxy CPU-s", "req/CPU-s", None, req_per_cpu("haproxy"), req_per_cpu("tether"))
def req_per_busy(k):
    s, gg, c = g(f"redis.{k}.SET"), g(f"redis.{k}.GET"), g(f"redis.{k}.cpu_proxy_busy_s")
    return round(2 * $REDIS_N / c) if None not in (s, gg, c) and c > 0 else None
row("redis req per CPU-$PROXY_CPU busy s", "req/CPU-s", None, req_per_busy("haproxy"), req_per_busy("tether"))
row(f"idle conn memory (N={int(g('idle.tether.n') or g('idle.haproxy.n') or $IDLE_N)})", "bytes/conn", None,
    g("idle.haproxy.bytes"), g("idle.tether.bytes"), better="lower")
row("idle conn memory, next N (marginal)", "bytes/conn", None,
    g("idle.haproxy.marginal_bytes"), g("idle.tether.marginal_bytes"), better="lower")
row("idle conn kernel mem (noisy)", "bytes/conn", None, g("idle.haproxy.kernel_bytes"), g("idle.tether.kernel_bytes"), better="lower")
row("idle conn fds", "fds/conn", None, g("idle.haproxy.fds_per_conn"), g("idle.tether.fds_per_conn"), better="lower")

def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if unit == "req/s" or unit == "req/CPU-s" or unit == "bytes/conn":
        return f"{v:,.0f}"
    return f"{v:.2f}"
def fr(v):
    return "n/a" if v is None else f"{v:.2f}x"

_stdout = sys.stdout
if not $RUN_TCP:  # --http-only: no tcp table
    sys.stdout = open("/dev/null", "w")
hdr = ["scenario", "unit", "direct", "haproxy", "tether", "tether/haproxy", "tether/direct"]
table = [hdr] + [[r["scenario"], r["unit"], fmt(r["direct"], r["unit"]), fmt(r["haproxy"], r["unit"]),
                  fmt(r["tether"], r["unit"]), fr(r["tether_haproxy"]), fr(r["tether_direct"])] for r in rows]
w = [max(len(x[i]) for x in table) for i in range(len(hdr))]
line = lambda cells: "| " + " | ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(cells)) + " |"
print()
print(f"tether vs HAProxy on 127.0.0.1 — proxy on CPU $PROXY_CPU, load on CPU $LOAD_CPU, quick=$QUICK")
print(line(hdr))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in table[1:]:
    print(line(r))
print("(memory and fds: lower is better; everything else: higher is better)")
print("(marginal: the RSS growth from the first batch's reading to the second's, per conn of the second batch; a Go")
print(" runtime may hand memory of the first batch (its goroutine stacks) back to the OS in between, so it can read low or")
print(" below zero; the two-batch average is (rss2 - rss0) / 2N, in the JSON as idle.KIND.rss0_kb / rss2_kb)")
print("(kernel memory: system-wide delta of MemTotal-MemFree-Buffers-Cached-AnonPages per conn; it includes the")
print(" 4 sockets of each proxied conn, so only the difference between the columns is the proxy's; noisy on a busy host)")
print("(per proxy CPU-s: the proxy process's utime+stime; per CPU-$PROXY_CPU busy s: all of CPU $PROXY_CPU's")
print(" busy time in /proc/stat, which adds softirq work not charged to the proxy, and anything else on CPU $PROXY_CPU)")
print()
details = {}
for k in ("direct", "haproxy", "tether"):
    d = {}
    for t in ("iperf", "redis"):
        for f in ("cpu_proxy_util", "cpu_load_util", "cpu_proxy_busy_s", "cpu_proxy_foreign"):
            if g(f"{t}.{k}.{f}") is not None:
                d[f"{t}_{f}"] = g(f"{t}.{k}.{f}")
    if g(f"iperf.{k}.cpu_s") is not None:
        d["iperf_proxy_cpu_s"] = g(f"iperf.{k}.cpu_s")
        d["iperf_proxy_cpu_util"] = round(g(f"iperf.{k}.cpu_s") / g(f"iperf.{k}.secs"), 3)
    if g(f"redis.{k}.cpu_s") is not None:
        d["redis_proxy_cpu_s"] = g(f"redis.{k}.cpu_s")
    for f in ("rss0_kb", "rss1_kb", "fds0", "fds1", "kernel0_kb", "kernel1_kb"):
        if g(f"idle.{k}.{f}") is not None:
            d["idle_" + f] = g(f"idle.{k}.{f}")
    details[k] = d
    if d:
        print(f"{k:8s}: " + ", ".join(f"{a}={b:g}" for a, b in d.items()))
print(f"(cpu_proxy_util / cpu_load_util: busy share of CPU $PROXY_CPU / CPU $LOAD_CPU during the run, all processes and softirq;")
print(f" cpu_proxy_foreign: share of CPU $PROXY_CPU taken by processes other than the proxy — above 0.05 the run was disturbed)")

def ver(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.splitlines()[0].strip()
    except Exception:
        return None
doc = dict(
    date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    quick=bool($QUICK), host=platform.node(), kernel=platform.release(), cpus=$ncpu,
    proxy_cpu=$PROXY_CPU, load_cpu=$LOAD_CPU,
    params=dict(iperf_seconds=$IPERF_SECS, redis_requests=$REDIS_N, redis_clients=$REDIS_CLIENTS,
                idle_conns=$IDLE_N, fd_limit=$FDS, haproxy_maxconn=$HAPROXY_MAXCONN, haproxy_splice=("${HAPROXY_SPLICE:-0}" == "1")),
    versions=dict(tether="$TETHER_COMMIT" if "$TETHER" else None, haproxy=ver(["haproxy", "-v"]),
                  iperf3=ver(["iperf3", "--version"]), redis=ver(["redis-server", "--version"]),
                  go=ver(["go", "version"])),
    rows=rows, details=details, raw=vals)
with open(sys.argv[2], "w") as f:
    json.dump(doc, f, indent=2)
sys.stdout = _stdout
print(f"JSON: {sys.argv[2]}")
EOF

if ((RUN_HTTP_TARGETS)); then
python3 - "$RESULTS" "$OUT_JSON" "$HTTP_SECS" "$HTTP_CONNS" "$HTTP_THREADS" "$TETHER_POOL_MAX" "$NGINX_KEEPALIVE" \
	"$PROXY_CPU" "$LOAD_CPU" "$(cat /proc/sys/net/ipv4/tcp_max_tw_buckets)" "$(cat /proc/sys/net/ipv4/ip_local_port_range)" <<'EOF'
import json, subprocess, sys
res, out_json = sys.argv[1], sys.argv[2]
secs, conns, threads, pool_max, nginx_ka, pcpu, lcpu, tw_max, port_range = sys.argv[3:12]
lo, hi = map(int, port_range.split())
pool_max = int(pool_max)
vals = {}
for line in open(res):
    k, v = line.split()
    if k.startswith("http."):
        vals[k] = float(v)
def g(scen, target, m):
    return vals.get(f"http.{scen}.{target}.{m}")

TARGETS = ["direct", "haproxy", "nginx", "tether"]
SCEN = {"ka": "keepalive", "close": "Connection: close"}

def ratio(a, b):
    return round(a / b, 3) if a is not None and b not in (None, 0) else None

def rpcpu(scen, t):
    r, c = g(scen, t, "requests"), g(scen, t, "cpu_s")
    return round(r / c) if r is not None and c else None

rows = []
def row(scen, name, unit, vals_by_target, better, target=None):
    r = dict(scenario=SCEN[scen], metric=name, unit=unit, better=better, **vals_by_target)
    r["tether_haproxy"] = ratio(r.get("tether"), r.get("haproxy"))
    r["tether_nginx"] = ratio(r.get("tether"), r.get("nginx"))
    r["target"] = target
    rows.append(r)

def judge(kind, scen, t_val, ref, bound=None):
    """The issue's target for this row: text and met (True/False/None)."""
    if kind == "cpu":
        text = "tether >= haproxy"
        met = None if t_val is None or ref is None else t_val >= ref
    elif kind == "p99":
        text = "tether <= haproxy"
        met = None if t_val is None or ref is None else t_val <= ref
    else:
        text = f"tether <= {bound} (pool size)"
        met = None if t_val is None else t_val <= bound
    return dict(text=text, met=met)

for scen in SCEN:
    by = lambda m: {t: g(scen, t, m) for t in TARGETS}
    row(scen, "requests/s", "req/s", by("rps"), "higher")
    p99 = by("p99_ms")
    row(scen, "p99 latency", "ms", p99, "lower", judge("p99", scen, p99["tether"], p99["haproxy"]))
    row(scen, "p50 latency", "ms", by("p50_ms"), "lower")
    cpu = {t: (rpcpu(scen, t) if t != "direct" else None) for t in TARGETS}
    row(scen, "req per proxy CPU-s", "req/CPU-s", cpu, "higher", judge("cpu", scen, cpu["tether"], cpu["haproxy"]))
    bc = by("backend_conns")
    row(scen, "backend conns opened", "conns", bc, "lower",
        judge("conns", scen, bc["tether"], None, pool_max) if scen == "close" else None)
    row(scen, "errors (socket + non-2xx)", "count", by("errors"), "lower")

def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit in ("req/s", "req/CPU-s", "conns", "count"):
        return f"{v:,.0f}"
    return f"{v:.2f}"
def fr(v):
    return "n/a" if v is None else f"{v:.2f}x"
def ft(t):
    if not t:
        return ""
    return t["text"] + ": " + {True: "met", False: "MISSED", None: "n/a"}[t["met"]]

def table(hdr, body, left=1):
    w = [max(len(x[i]) for x in [hdr] + body) for i in range(len(hdr))]
    line = lambda cells: "| " + " | ".join(c.ljust(w[i]) if i < left or i == len(hdr) - 1 and hdr[-1] == "issue target" else c.rjust(w[i]) for i, c in enumerate(cells)) + " |"
    print(line(hdr))
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in body:
        print(line(r))

print()
print(f"HTTP/1.1 on 127.0.0.1 — wrk -c {conns} -t {threads} -d {secs}s --latency, 64-byte body from an nginx backend;")
print(f"proxy on CPU {pcpu} (tether GOMAXPROCS=1, HAProxy nbthread 1, nginx 1 worker), wrk and the backend on CPU {lcpu}")
hdr = ["scenario", "metric", "unit", "direct", "haproxy", "nginx", "tether", "tether/haproxy", "tether/nginx", "issue target"]
body = [[r["scenario"], r["metric"], r["unit"]] + [fmt(r[t], r["unit"]) for t in TARGETS] +
        [fr(r["tether_haproxy"]), fr(r["tether_nginx"]), ft(r["target"])] for r in rows]
table(hdr, body, left=3)
print("(requests/s, per CPU-s: higher is better; latency, backend conns, errors: lower is better)")
print("(per proxy CPU-s: wrk's request count / the proxy's utime+stime over the run, nginx master+worker summed;")
print(" backend conns: the backend nginx's stub_status accepts delta; direct = wrk's own connections)")

tw_rows, tw = [], {}
for scen in SCEN:
    for t in TARGETS:
        c = [g(scen, t, k) for k in ("tw_client", "tw_front", "tw_back", "tw_backend")]
        if all(x is None for x in c):
            continue
        ov = g(scen, t, "tw_overflow") or 0
        if t == "direct":
            c[1] = c[2] = None
        tw[f"{scen}.{t}"] = dict(client=c[0], proxy_front=c[1], proxy_back=c[2], backend=c[3], kernel_dropped=ov)
        tw_rows.append([SCEN[scen], t] + ["-" if x is None else f"{x:,.0f}" + ("+" if ov else "") for x in c] +
                       [f"{ov:,.0f}" if ov else "0"])
print()
print(f"TIME_WAIT sockets 1 s after wrk ends, by the side that closed first (ss -tan state time-wait, by port)")
table(["scenario", "target", "client", "proxy front", "proxy back", "backend", "kernel dropped"], tw_rows, left=2)
print("(client: wrk closed first; proxy front: the proxy closed its client conn first; proxy back: the proxy closed")
print(" its backend conn first; backend: nginx closed first. '+': the kernel hit tcp_max_tw_buckets")
print(f" ({tw_max}) during the run and dropped the TIME_WAIT sockets counted in the last column, so the counts are lower bounds)")
print(f"(one side's count saturates near {(hi - lo + 1) // 2:,}: connect() takes even ports of {lo}-{hi} first, and a new SYN")
print(" on a 4-tuple still in TIME_WAIT takes that socket over; a count there means nearly every close left one)")

details = {}
for scen in SCEN:
    for t in TARGETS:
        d = {k.split(".", 3)[3]: v for k, v in vals.items() if k.startswith(f"http.{scen}.{t}.")}
        if d:
            details[f"{scen}.{t}"] = d
errs = [(k, d) for k, d in details.items() if d.get("errors")]
if errs:
    print()
    for k, d in errs:
        print(f"errors {k}: connect={d.get('err_connect', 0):g} read={d.get('err_read', 0):g} write={d.get('err_write', 0):g} "
              f"timeout={d.get('err_timeout', 0):g} non-2xx/3xx={d.get('non2xx', 0):g} of {d.get('requests', 0):g} requests")
for k, d in details.items():
    if d.get("died"):
        print(f"{k}: the proxy died during the run")

def ver(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return ((p.stdout or "") + (p.stderr or "")).splitlines()[0].strip()
    except Exception:
        return None
doc = json.load(open(out_json))
doc["http"] = dict(
    params=dict(seconds=float(secs), connections=int(conns), threads=int(threads), body_bytes=64,
                tether_pool_max=pool_max, nginx_upstream_keepalive=int(nginx_ka), tcp_max_tw_buckets=int(tw_max)),
    versions=dict(wrk=ver(["wrk", "--version"]), nginx=ver(["nginx", "-v"])),
    rows=rows, time_wait=tw, details=details)
with open(out_json, "w") as f:
    json.dump(doc, f, indent=2)
print(f"HTTP figures added to {out_json} (key \"http\")")
EOF
fi

if ((RUN_LOADGEN || RUN_TB)); then
python3 - "$RESULTS" "$OUT_JSON" "$tmp" "$PROXY_CPU" "$LOAD_CPU" "$LG_SECS" "$LG_N" "$LG_LONG_CONNS" "$LG_SHORT_CONNS" \
	"$TB_SECS" "$TB_CONNS" "$TETHER_POOL_MAX" "$RUN_LOADGEN" "$RUN_TB" "$HAVE_AB" \
	"$(cat /proc/sys/net/ipv4/ip_local_port_range)" "$(cat /proc/sys/net/ipv4/tcp_tw_reuse)" <<'EOF'
import json, os, subprocess, sys
(res, out_json, tmp, pcpu, lcpu, lg_secs, lg_n, lg_long_c, lg_short_c, tb_secs, tb_c, pool_max,
 run_lg, run_tb, have_ab, port_range, tw_reuse) = sys.argv[1:18]
lo, hi = map(int, port_range.split())
vals = {}
for line in open(res):
    k, v = line.split()
    if k.startswith(("lg.", "tb.")):
        vals[k] = float(v)
g = vals.get

def ratio(a, b):
    return round(a / b, 3) if a is not None and b not in (None, 0) else None
def fi(v):
    return "n/a" if v is None else f"{v:,.0f}"
def ff(v, d=2):
    return "n/a" if v is None else f"{v:.{d}f}"
def fr(v):
    return "n/a" if v is None else f"{v:.2f}x"
def table(hdr, body, left):
    w = [max(len(x[i]) for x in [hdr] + body) for i in range(len(hdr))]
    line = lambda cells: "| " + " | ".join(c.ljust(w[i]) if i < left or hdr[i] == "issue target" else c.rjust(w[i]) for i, c in enumerate(cells)) + " |"
    print(line(hdr))
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in body:
        print(line(r))
def summary(path):
    """tether bench's JSON result without the distribution and series."""
    try:
        d = json.load(open(path))
    except Exception:
        return None
    return [{k: v for k, v in r.items() if k not in ("distribution", "series")} for r in d["results"]]

doc = json.load(open(out_json))

# ------------------------------------------------ 6: load generator check
if run_lg == "1":
    scpu = int(g("lg.server_cpu", float(lcpu)))
    CMD = dict(
        long_tether=f"tether bench --conn long -c {lg_long_c} -d {lg_secs}s",
        long_wrk=f"wrk -c {lg_long_c} -t 1 -d {lg_secs}s",
        short_tether=f"tether bench --conn short --close server -c {lg_short_c} -n {lg_n}",
        short_ab=f"ab -n {lg_n} -c {lg_short_c}",
        shortc_tether=f"tether bench --conn short --close client -c {lg_short_c} -n {lg_n}",
    )
    CHECK = dict(long_tether=f"long, {lg_long_c} conns", long_wrk=f"long, {lg_long_c} conns",
                 short_tether="short, server closes", short_ab="short, server closes",
                 shortc_tether="short, client closes")
    REF = dict(long_tether="long_wrk", short_tether="short_ab")
    def reps(base):
        return sorted({k.split(".")[2] for k in vals if k.startswith(f"lg.{base}.r")}, key=lambda x: int(x[1:]))
    def best(base):
        """the rep with the highest req/s (a busy host only slows a run down)"""
        rs = [x for x in reps(base) if g(f"lg.{base}.{x}.rps") is not None]
        return max(rs, key=lambda x: g(f"lg.{base}.{x}.rps")) if rs else None
    rows, body = [], []
    for run in CMD:
        if run == "short_ab" and have_ab != "1":
            continue
        rep = best(run)
        def m(k, run=run, rep=rep):
            return None if rep is None else g(f"lg.{run}.{rep}.{k}")
        rps, secs, gen, wall, ngx = m("rps"), m("secs"), m("gen_cpu_s"), m("wall_s"), m("nginx_cpu_s")
        r = dict(run=run, check=CHECK[run], command=CMD[run], best_of=len(reps(run)), best_rep=rep,
                 rps_all=[g(f"lg.{run}.{x}.rps") for x in reps(run)],
                 requests=m("requests"), seconds=secs, rps=rps, errors=m("errors"),
                 gen_cpu_util=ratio(gen, wall), nginx_cpu_util=ratio(ngx, wall),
                 req_per_gen_cpu_s=round(m("requests") / gen) if gen and m("requests") else None,
                 foreign_server_cpu=m("foreign_server_cpu"), foreign_load_cpu=m("foreign_load_cpu"))
        for k in ("conns_opened", "ports_used", "tw_client", "tw_target", "tw_overflow", "p50_ms", "p99_ms"):
            if m(k) is not None:
                r[k] = m(k)
        target = None
        if run in REF:
            ref = best(REF[run])
            r["ratio"] = ratio(rps, None if ref is None else g(f"lg.{REF[run]}.{ref}.rps"))
            target = dict(text=f">= 0.9x {REF[run].split('_')[1]}", met=None if r["ratio"] is None else r["ratio"] >= 0.9)
        elif run == "shortc_tether":
            target = dict(text="information", met=None)
        r["target"] = target
        rows.append(r)
        tt = "" if not target else target["text"] + ("" if target["text"] == "information" else ": " + {True: "met", False: "MISSED", None: "n/a"}[target["met"]])
        allr = " / ".join(fi(x) for x in r["rps_all"]) if len(r["rps_all"]) > 1 else ""
        body.append([r["check"], r["command"], fi(r["requests"]), ff(secs), fi(rps), allr, ff(r["gen_cpu_util"]), ff(r["nginx_cpu_util"]),
                     fi(r["req_per_gen_cpu_s"]), fr(r.get("ratio")) if run in REF else "", tt])
    print()
    print(f"load generator check — 127.0.0.1, the load generator alone on CPU {lcpu} (tether bench with GOMAXPROCS=1),")
    print(f"the backend nginx (1 worker, 64-byte body) on CPU {scpu}{'' if scpu != int(lcpu) else ' WITH the load generator (it could not be moved)'}; one nginx port per run")
    table(["check", "command", "requests", "seconds", "req/s", "req/s of each run", "gen CPU", "nginx CPU", "req/gen CPU-s", "tether/ref", "issue target"], body, left=2)
    print("(req/s: the tool's own figure; the short runs last about a second, so each ran 3 times, alternating, and the")
    print(" best counts. gen CPU / nginx CPU: CPU-seconds of the load generator / the nginx worker per wall second of the")
    print(" load generator's process (its start-up and, for tether bench, its TIME_WAIT count included); near 1.00 = that")
    print(" side is the bottleneck; rough for the sub-second short runs, where tick-based accounting can read above 1.00.")
    print(" tether/ref: tether bench's req/s over wrk's (long) or ab's (short) in the row below)")
    print("(ab sends HTTP/1.0 without keepalive, so nginx closes first: --close server is the same close pattern;")
    print(" --close client is tether bench's default, where the client closes first)")
    dist = [r for r in rows if max(r.get("foreign_server_cpu") or 0, r.get("foreign_load_cpu") or 0) > 0.05]
    for r in dist:
        print(f"(disturbed: during {r['run']} {r['best_rep']} other processes took {r['foreign_server_cpu']:.0%} of CPU {scpu} and "
              f"{r['foreign_load_cpu']:.0%} of CPU {lcpu}: a busy host; rerun for a clean figure)")
    tw_body = []
    for r in rows:
        if "conns_opened" in r:
            ov = r.get("tw_overflow") or 0
            plus = "+" if ov else ""
            tw_body.append([r["command"], fi(r["conns_opened"]), fi(r["ports_used"]), fi(r["tw_client"]) + plus, fi(r["tw_target"]) + plus,
                            fi(ov), fi(r["errors"])])
    if tw_body:
        print()
        print("tether bench's runs above: connections, ephemeral ports, TIME_WAIT by side (sock_diag, by the run's 4-tuples)")
        table(["command", "conns opened", "ports used", "TIME_WAIT client", "TIME_WAIT target", "kernel dropped", "errors"], tw_body, left=1)
        half = (hi - lo + 1) // 2
        c = next((r for r in rows if r["run"] == "shortc_tether" and "conns_opened" in r), None)
        if any(r.get("tw_overflow") for r in rows):
            print(f"('+' / kernel dropped: tcp_max_tw_buckets was reached during the run — mostly by the earlier runs' TIME_WAIT")
            print(f" sockets, or other work on the host — and the kernel kept no TIME_WAIT for that many closes: the counts are")
            print(f" lower bounds, and those ports were free at once. bash bench/compare.sh --loadgen-only gives clean counts)")
        if c:
            print(f"(--close client: the client closes first, so every connection leaves a TIME_WAIT socket on the client's port for 60 s.")
            print(f" connect() takes the even half of the ephemeral ports {lo}-{hi} first (~{half:,});", end=" ")
            if c.get("tw_overflow"):
                print(f"the kernel dropped TIME_WAIT sockets in this run,")
                print(f" so it says nothing about port exhaustion; with them kept, ~{half:,} conns exhaust those ports)")
            elif c["ports_used"] < c["conns_opened"] and c["tw_client"] >= 0.9 * half:
                print(f"here {c['conns_opened']:,.0f} conns ran on {c['ports_used']:,.0f} ports:")
                print(f" the client exhausted its free ports and connect() took over its own TIME_WAIT sockets, which only")
                print(f" net.ipv4.tcp_tw_reuse (= {tw_reuse}; 2 = loopback only) allows; without it, connect() fails with EADDRNOTAVAIL)")
            else:
                print(f"{c['conns_opened']:,.0f} conns fit in free ports this time;")
                print(f" a longer run exhausts them: then only net.ipv4.tcp_tw_reuse (= {tw_reuse}; 2 = loopback only) keeps connect() from failing)")
        print("(--close server: the TIME_WAIT lands on nginx's side, the client's ports are free at once)")
    doc["loadgen"] = dict(
        params=dict(long_seconds=float(lg_secs), short_requests=int(lg_n), long_conns=int(lg_long_c), short_conns=int(lg_short_c),
                    load_cpu=int(lcpu), server_cpu=scpu, tether_gomaxprocs=1, wrk_threads=1,
                    ephemeral_ports=port_range, tcp_tw_reuse=int(tw_reuse)),
        rows=rows,
        tether_bench={f"{run}.{x}": summary(os.path.join(tmp, f"lg-{run}.{x}.out")) for run in CMD if run.endswith("_tether") for x in reps(run)})

# ------------------------------------------------ 5: short vs long through tether
if run_tb == "1":
    NAMES = dict(direct="direct nginx", tether="tether (pooled)")
    rows, body = [], []
    for t in ("direct", "tether"):
        for conn in ("short", "long"):
            def m(k):
                return g(f"tb.{t}.{conn}.{k}")
            if m("rps") is None:
                continue
            r = dict(target=t, conn=conn, **{k: m(k) for k in ("requests", "rps", "p50_ms", "p99_ms", "conns_opened",
                                                              "ports_used", "tw_client", "tw_target", "errors")})
            r["tw_overflow_run"] = g(f"tb.{t}.tw_overflow")  # short and long together
            plus = "+" if r["tw_overflow_run"] else ""
            rows.append(r)
            body.append([NAMES[t], conn, fi(r["rps"]), ff(r["p50_ms"], 3), ff(r["p99_ms"], 3), fi(r["conns_opened"]), fi(r["ports_used"]),
                         fi(r["tw_client"]) + plus, fi(r["tw_target"]) + plus, fi(r["errors"])])
    print()
    print(f"short vs long connections — tether bench --compare -c {tb_c} -d {tb_secs}s (each side) on CPU {lcpu}, GOMAXPROCS=1;")
    print(f"through tether's pooled http virtual server (reuse shared, max_idle {pool_max}; GOMAXPROCS=1 on CPU {pcpu}) and to the nginx backend directly")
    table(["target", "conn", "req/s", "p50 ms", "p99 ms", "conns opened", "ports used", "TIME_WAIT client", "TIME_WAIT target", "errors"], body, left=2)
    rps = lambda t, c: g(f"tb.{t}.{c}.rps")
    summ = dict(long_over_short={t: ratio(rps(t, "long"), rps(t, "short")) for t in ("direct", "tether")},
                tether_over_direct={c: ratio(rps("tether", c), rps("direct", c)) for c in ("short", "long")},
                backend_conns={t: g(f"tb.{t}.backend_conns") for t in ("direct", "tether")})
    print(f"long/short req/s: direct {fr(summ['long_over_short']['direct'])}, tether {fr(summ['long_over_short']['tether'])};"
          f" tether/direct: short {fr(summ['tether_over_direct']['short'])}, long {fr(summ['tether_over_direct']['long'])}")
    print(f"backend conns opened over short+long (nginx stub_status): through tether {fi(summ['backend_conns']['tether'])} (pool bound {pool_max}),"
          f" direct {fi(summ['backend_conns']['direct'])}")
    print("(TIME_WAIT client / target: counted by tether bench with sock_diag by the run's 4-tuples; short conns close from the")
    print(" client (--close client, the default), so they land on the client; target = tether's front sockets, or nginx's for direct;")
    print(" tether's pooled back-side conns stay open and are not counted. A count near the even half of the ephemeral")
    print(f" ports (~{(hi - lo + 1) // 2:,}) means the client ran out of free ports and connect() reused its own TIME_WAIT sockets")
    print(f" (net.ipv4.tcp_tw_reuse = {tw_reuse}); '+': the kernel hit tcp_max_tw_buckets and dropped some, counts are lower bounds)")
    doc["tether_bench"] = dict(
        params=dict(seconds_each=float(tb_secs), concurrency=int(tb_c), close="client", load_cpu=int(lcpu), proxy_cpu=int(pcpu),
                    tether_pool_max=int(pool_max)),
        rows=rows, **summ,
        results={t: summary(os.path.join(tmp, f"tb-{t}.out")) for t in ("direct", "tether")})

def ver(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return ((p.stdout or "") + (p.stderr or "")).splitlines()[0].strip()
    except Exception:
        return None
doc.setdefault("versions", {})["ab"] = ver(["ab", "-V"]) if have_ab == "1" else None
with open(out_json, "w") as f:
    json.dump(doc, f, indent=2)
print(f"tether bench figures added to {out_json} (keys " + ", ".join(f'"{k}"' for k in ("loadgen", "tether_bench") if k in doc) + ")")
EOF
fi

# ------------------------------------------------ 4c, 7c: idle keepalive client conns
if ((RUN_KA_HTTP || RUN_KA_HTTPS)); then
python3 - "$RESULTS" "$OUT_JSON" "$IDLE_KA_N" "$KA_SETTLE" "$PROXY_CPU" "$LOAD_CPU" "$NGINX_KEEPALIVE" "$TETHER_POOL_MAX" "$KA_TLS" <<'EOF'
import json, sys
res, out_json, n, settle, pcpu, lcpu, nginx_ka, pool_max, tls_file = sys.argv[1:10]
neg = dict(line.rstrip("\n").split("\t", 1) for line in open(tls_file) if "\t" in line)
vals = {}
for line in open(res):
    k, v = line.split()
    if k.startswith("idleka."):
        vals[k] = float(v)
g = vals.get
KINDS = ("haproxy", "nginx", "tether")
PROTOS = [p for p in ("http", "https") if any(k.startswith(f"idleka.{p}.") for k in vals)]

def ratio(a, b):
    return round(a / b, 3) if a is not None and b not in (None, 0) else None

rows = []
for p in PROTOS:
    for metric, unit, f in (("RSS per idle keepalive conn", "KiB", "kib_per_conn"),
                            ("RSS per conn, next batch (marginal)", "KiB", "marginal_kib_per_conn"), ("fds per conn", "fds", "fds_per_conn"),
                            ("backend conns held", "conns", "backend_conns"), ("conns closed before the reading", "conns", "closed")):
        r = dict(proto=p, metric=metric, unit=unit, better="lower", **{k: g(f"idleka.{p}.{k}.{f}") for k in KINDS})
        r["tether_haproxy"] = ratio(r["tether"], r["haproxy"])
        r["tether_nginx"] = ratio(r["tether"], r["nginx"])
        rows.append(r)

def fmt(v, unit):
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if unit == "conns" else f"{v:.2f}" if unit == "fds" else f"{v:.1f}"
def fr(v):
    return "n/a" if v is None else f"{v:.2f}x"
hdr = ["proto", "metric", "unit", "haproxy", "nginx", "tether", "tether/haproxy", "tether/nginx"]
body = [[r["proto"] if i == 0 or rows[i - 1]["proto"] != r["proto"] else "", r["metric"], r["unit"]] +
        [fmt(r[k], r["unit"]) for k in KINDS] +
        ([fr(r["tether_haproxy"]), fr(r["tether_nginx"])] if r["unit"] != "conns" else ["", ""]) for i, r in enumerate(rows)]
w = [max(len(x[i]) for x in [hdr] + body) for i in range(len(hdr))]
line = lambda cells: "| " + " | ".join(c.ljust(w[i]) if i < 3 else c.rjust(w[i]) for i, c in enumerate(cells)) + " |"
print()
print(f"idle keepalive client conns — {n} conns through a fresh proxy each, every one after one GET / (64-byte body from an")
print(f"nginx backend; https: TLS 1.3 handshake first, section 7's certificate), then idle {settle} s; proxy alone on CPU {pcpu}")
print(f"(tether GOMAXPROCS=1, HAProxy nbthread 1, nginx 1 worker), bench/idleconns and the backend on CPU {lcpu}")
print(line(hdr))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in body:
    print(line(r))
print("(RSS: the proxy's VmRSS (nginx master + worker) 2 s after the last response minus before the first connect, per conn;")
print(" it includes what a fresh proxy touches once (code pages, pools, runtime warm-up). next batch (marginal): the same")
print(f" for {n} more conns opened on top of the first ones, so the one-time part is out: what each further conn costs.")
print(" Lower is better. fds likewise. backend conns held: the proxy's established conns to its backend port at the reading;")
print(f" their memory is in the RSS. HAProxy keeps idle server conns up to what it used at once (idleconns has up to 128")
print(f" connects in flight), nginx caches {nginx_ka} idle upstream conns, tether's pool keeps at most {pool_max})")
if neg:
    print("(negotiated by idleconns: " + "; ".join(f"{k.split('.')[1]} {v}" for k, v in neg.items()) + ")")
for p in PROTOS:
    for k in KINDS:
        if g(f"idleka.{p}.{k}.died"):
            print(f"({k} {p}: the proxy died holding the conns)")
        if g(f"idleka.{p}.{k}.closed"):
            print(f"({k} {p}: {g(f'idleka.{p}.{k}.closed'):.0f} conns were closed before the reading: its figure is low)")

details = {}
for p in PROTOS:
    for k in KINDS:
        d = {x.split(".", 3)[3]: v for x, v in vals.items() if x.startswith(f"idleka.{p}.{k}.")}
        if d:
            details[f"{p}.{k}"] = d
doc = json.load(open(out_json))
doc["idle_keepalive"] = dict(
    params=dict(conns=int(n), request="GET / HTTP/1.1, 64-byte body", settle_seconds=float(settle), proxy_cpu=int(pcpu), load_cpu=int(lcpu),
                tls="https: TLS 1.3, X25519, TLS_AES_128_GCM_SHA256 (HAProxy and nginx pinned; Go client offers X25519 only), ECDSA P-256",
                nginx_upstream_keepalive=int(nginx_ka), tether_pool_max=int(pool_max)),
    rows=rows, details=details, negotiated=neg)
with open(out_json, "w") as f:
    json.dump(doc, f, indent=2)
print(f"idle keepalive figures added to {out_json} (key \"idle_keepalive\")")
EOF
fi

# ------------------------------------------------ 7: https
((RUN_HTTPS)) || exit 0
python3 - "$RESULTS" "$TLS_INFO" "$OUT_JSON" "$HTTPS_SECS" "$HS_CONNS" "$HTTPS_CONNS" "$HTTPS_THREADS" "$PROXY_CPU" "$LOAD_CPU" <<'EOF'
import json, subprocess, sys
res, info_file, out_json, secs, hs_c, wrk_c, wrk_t, pcpu, lcpu = sys.argv[1:10]
vals, info = {}, {}
for line in open(res):
    k, v = line.split()
    if k.startswith("tls."):
        vals[k] = float(v)
for line in open(info_file):
    k, _, v = line.rstrip("\n").partition("\t")
    info.setdefault(k, []).append(v)
g = vals.get
def i1(k):
    v = info.get(k)
    return v[-1] if v else None
KINDS = ("haproxy", "tether")

def ratio(a, b):
    return round(a / b, 3) if a is not None and b not in (None, 0) else None
def per_cpu(scen, kind, count):
    n, c = g(f"tls.{scen}.{kind}.{count}"), g(f"tls.{scen}.{kind}.cpu_s")
    return round(n / c) if n is not None and c else None
def per_busy(scen, kind, count):
    n, c = g(f"tls.{scen}.{kind}.{count}"), g(f"tls.{scen}.{kind}.cpu_proxy_busy_s")
    return round(n / c) if n is not None and c else None
def util(scen, kind):
    c, s = g(f"tls.{scen}.{kind}.cpu_s"), g(f"tls.{scen}.{kind}.secs")
    return round(c / s, 2) if c is not None and s else None

rows = []
def row(scen, metric, unit, by, better="higher", target=None):
    r = dict(scenario=scen, metric=metric, unit=unit, better=better, haproxy=by.get("haproxy"), tether=by.get("tether"))
    r["tether_haproxy"] = ratio(r["tether"], r["haproxy"])
    if target is not None:
        met = None if r["tether_haproxy"] is None else r["tether_haproxy"] >= target
        r["target"] = dict(text=f"tether/haproxy >= {target}x", ratio=target, met=met)
    rows.append(r)
    return r

HS = f"new handshakes (short conns, 1 request each)"
KA = f"keepalive (wrk -c {wrk_c} -t {wrk_t})"
by = lambda f: {k: f(k) for k in KINDS}
row(HS, "handshakes/s", "hs/s", by(lambda k: g(f"tls.hs.{k}.hs_per_s")))
hs_cpu = row(HS, "handshakes per proxy CPU-s", "hs/CPU-s", by(lambda k: per_cpu("hs", k, "handshakes")), target=0.8)
row(HS, f"handshakes per CPU-{pcpu} busy s", "hs/CPU-s", by(lambda k: per_busy("hs", k, "handshakes")))
row(HS, "handshake p50 (client side)", "ms", by(lambda k: g(f"tls.hs.{k}.hs_p50_ms")), "lower")
row(HS, "handshake p99 (client side)", "ms", by(lambda k: g(f"tls.hs.{k}.hs_p99_ms")), "lower")
row(HS, "resumed handshakes", "count", by(lambda k: g(f"tls.hs.{k}.resumed")), "lower")
row(HS, "proxy CPU share (own)", "CPU", by(lambda k: util("hs", k)), "info")
row(HS, f"CPU {pcpu} busy share (all)", "CPU", by(lambda k: g(f"tls.hs.{k}.cpu_proxy_util")), "info")
row(HS, "errors", "count", by(lambda k: g(f"tls.hs.{k}.errors")), "lower")
row(KA, "requests/s", "req/s", by(lambda k: g(f"tls.ka.{k}.rps")))
ka_cpu = row(KA, "req per proxy CPU-s", "req/CPU-s", by(lambda k: per_cpu("ka", k, "requests")), target=1.0)
row(KA, f"req per CPU-{pcpu} busy s", "req/CPU-s", by(lambda k: per_busy("ka", k, "requests")))
row(KA, "p99 latency", "ms", by(lambda k: g(f"tls.ka.{k}.p99_ms")), "lower")
row(KA, "proxy CPU share (own)", "CPU", by(lambda k: util("ka", k)), "info")
row(KA, f"CPU {pcpu} busy share (all)", "CPU", by(lambda k: g(f"tls.ka.{k}.cpu_proxy_util")), "info")
row(KA, "errors", "count", by(lambda k: g(f"tls.ka.{k}.errors")), "lower")

def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit in ("hs/s", "req/s", "hs/CPU-s", "req/CPU-s", "count"):
        return f"{v:,.0f}"
    return f"{v:.2f}"
def fr(v):
    return "n/a" if v is None else f"{v:.2f}x"
def ft(t):
    if not t:
        return ""
    return t["text"] + ": " + {True: "met", False: "MISSED", None: "n/a"}[t["met"]]

hdr = ["scenario", "metric", "unit", "haproxy", "tether", "tether/haproxy", "issue target"]
body = [[r["scenario"] if i == 0 or rows[i - 1]["scenario"] != r["scenario"] else "", r["metric"], r["unit"],
         fmt(r["haproxy"], r["unit"]), fmt(r["tether"], r["unit"]), fr(r["tether_haproxy"]), ft(r.get("target"))] for i, r in enumerate(rows)]
w = [max(len(x[i]) for x in [hdr] + body) for i in range(len(hdr))]
line = lambda cells: "| " + " | ".join(c.ljust(w[i]) if i < 3 or i == 6 else c.rjust(w[i]) for i, c in enumerate(cells)) + " |"
print()
print(f"HTTPS on 127.0.0.1 — HAProxy and tether terminate TLS 1.3 (one ECDSA P-256 certificate) and forward HTTP/1.1 to an nginx")
print(f"backend (64-byte body); proxy alone on CPU {pcpu} (tether GOMAXPROCS=1, HAProxy nbthread 1), load and backend on CPU {lcpu}")
print(f"handshakes: tether bench --conn short -c {hs_c} -d {secs}s --tls-min 1.3 --tls-groups x25519 (no resumption, GOMAXPROCS=1);")
print(f"keepalive: wrk -c {wrk_c} -t {wrk_t} -d {secs}s --latency https://...")
print(line(hdr))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in body:
    print(line(r))
print("(per proxy CPU-s: the proxy's utime+stime over the run; per CPU busy s: all busy time of the proxy's CPU in /proc/stat,")
print(" softirq included. proxy CPU share (own): the proxy's CPU-s per second of the run; CPU busy share (all): the share of")
print(f" CPU {pcpu} that was busy, the proxy, softirq and anything else; near 1.00 the proxy's CPU was the limit, lower means the")
print(f" load generator (sharing CPU {lcpu} with the backend) was, and handshakes/s or requests/s are the generator's ceiling)")

# what each proxy negotiated, with each load generator
neg = {}
print()
print("negotiated (version / cipher suite / key exchange / ALPN):")
for k in KINDS:
    hs, probe = i1(f"hs.{k}.negotiated"), i1(f"probe.{k}")
    neg[k] = dict(tether_bench=hs, openssl_defaults=probe)
    print(f"  {k:8s} tether bench: {hs or 'n/a'};  openssl s_client with OpenSSL's defaults (as wrk): {probe or 'n/a'}")
def strip_verify(p):
    return None if p is None else p.split(" / verify")[0]
unavailable = i1("tether.unavailable")
same = {}
for who, f in (("tether_bench", lambda k: neg[k]["tether_bench"]), ("openssl_defaults", lambda k: strip_verify(neg[k]["openssl_defaults"]))):
    a, b = f("haproxy"), f("tether")
    same[who] = None if a is None or b is None or unavailable else a == b
    if same[who] is False:
        print(f"  MISMATCH ({who}): haproxy {a} vs tether {b}: the comparison is not like for like")
if not unavailable and all(v for v in same.values()):
    print("  same version, cipher suite and key exchange on both proxies, for both load generators")
for k in KINDS:
    for m in info.get(f"hs.{k}.tls_error", []):
        print(f"  {k}: TLS handshake failures: {m}")
    for m in info.get(f"hs.{k}.errors", []):
        print(f"  {k}: handshake run errors: {m}")
if unavailable:
    print()
    print(f"tether: NO HTTPS FIGURES — {unavailable}")
sat = {f"{s}.{k}": dict(proxy_own=util(s, k), cpu_busy=g(f"tls.{s}.{k}.cpu_proxy_util")) for s in ("hs", "ka") for k in KINDS}
low = [k for k, v in sat.items() if v["cpu_busy"] is not None and v["cpu_busy"] < 0.9]
if low:
    print(f"(CPU {pcpu} below 90% busy in {', '.join(low)}: the load generator was the limit there, not the proxy;")
    print(f" the per CPU-s figures still compare the cost, the rates are lower bounds of the proxy's)")
dist = [f"{s}.{k}" for s in ("hs", "ka") for k in KINDS if (g(f"tls.{s}.{k}.cpu_proxy_foreign") or 0) > 0.05]
if dist:
    print(f"(disturbed: other processes took over 5% of CPU {pcpu} during {', '.join(dist)}: a busy host; rerun for clean figures)")

doc = json.load(open(out_json))
doc["https"] = dict(
    params=dict(seconds=float(secs), handshake_conns=int(hs_c), wrk_connections=int(wrk_c), wrk_threads=int(wrk_t),
                proxy_cpu=int(pcpu), load_cpu=int(lcpu), certificate="ECDSA P-256, self-signed, CN/SAN 127.0.0.1",
                tls="1.3 only; HAProxy pinned to X25519 and TLS_AES_128_GCM_SHA256; tether bench offers x25519 only",
                body_bytes=64),
    rows=rows,
    targets=dict(handshakes_per_cpu_s=dict(ratio=hs_cpu["tether_haproxy"], target=0.8, met=hs_cpu.get("target", {}).get("met")),
                 keepalive_rps_per_cpu_s=dict(ratio=ka_cpu["tether_haproxy"], target=1.0, met=ka_cpu.get("target", {}).get("met"))),
    negotiated=neg, same_negotiation=same, proxy_cpu_share=sat, tether_unavailable=unavailable,
    details={k: v for k, v in vals.items()})
def ver(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return ((p.stdout or "") + (p.stderr or "")).splitlines()[0].strip()
    except Exception:
        return None
doc.setdefault("versions", {}).update(openssl=ver(["openssl", "version"]), haproxy=ver(["haproxy", "-v"]),
                                      wrk=ver(["wrk", "--version"]))
with open(out_json, "w") as f:
    json.dump(doc, f, indent=2)
print(f"HTTPS figures added to {out_json} (key \"https\")")
sys.exit(3 if unavailable else 0)
EOF
