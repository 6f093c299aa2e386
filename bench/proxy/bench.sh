#!/usr/bin/env bash
# bench/proxy/bench.sh — the guard's data path against nginx and against no
# proxy at all (issue 12), measured in one run, the same way, with the same
# stand-in upstream and the same load generator:
#
#   direct  load generator → stand-in vLLM
#   nginx   load generator → nginx 1.22 (Debian's nginx-light; nginx.conf.tmpl:
#           2 workers, bearer-key map → JSON 401, limit_req keyed on the key
#           that never rejects, unbuffered JSON access_log, keepalive
#           upstream pool, proxy_buffering off) → stand-in vLLM
#   glmctl  load generator → `glmctl up -c` with only a guard (auth, limits
#           that never reject, audit with fsync = "interval", metrics on)
#           → stand-in vLLM
#
# The stand-in is `glmctl stub vllm` (the same binary) on a loopback TCP
# port: --itl 1ms --reply-tokens 64, so a stream is 64 tokens 1 ms apart and
# a non-stream chat (max_tokens 1) answers at once; a second one with
# --itl 10s holds streams open for the memory measures. The load generator
# is bench/proxy/loadgen (Go, standard library only); it reads the proxy's
# CPU from /proc/PID/stat (nginx: master + workers; glmctl: the `glmctl up`
# process) and RSS from /proc/PID/status over exactly the window it counts.
#
# Measures (each repetition starts fresh proxies and runs the paths in a
# rotated order; the report gives medians and the ratios glmctl÷nginx and
# glmctl÷direct):
#   chat64     non-stream chat, CONNS connections, closed loop, DURATION
#              (glmctl also with audit off: "glmctl-noaudit")
#   serial     one request at a time, SERIAL_DURATION
#   stream256  STREAMS concurrent streams, closed loop, DURATION
#   hold1000   OPEN_STREAMS open slow streams: RSS growth ÷ streams
#   hold10k    BIG_STREAMS open slow streams (as many as RLIMIT_NOFILE allows;
#              the report extrapolates to 10,000), once
#   open       open loop at each of RATES req/s for RATE_DURATION
#
# Usage: bench/proxy/bench.sh (make bench-proxy). Knobs (environment):
#   GLMCTL=bin/glmctl  REPS=3  DURATION=10s  SERIAL_DURATION=5s  WARMUP=1s
#   RATES="1000 2000 5000 10000 20000"  RATE_DURATION=3s  CONNS=64
#   STREAMS=256  OPEN_STREAMS=1000  BIG_STREAMS=10000 (0: skip)
#   SMOKE=1 (every path for about a second with tiny loads; results stay in
#   the work directory)  KEEP=1 (keep the work directory)  GO=go
# Outputs (not in smoke mode): bench/proxy/results.md (the Markdown tables,
# also printed), bench/proxy/results.jsonl (every measure, one JSON line),
# bench/proxy/latency.csv and docs/bench-proxy-latency.svg (open loop).
#
# Runs as root when nginx must be installed (apt-get install nginx-light,
# with a /usr/sbin/policy-rc.d that exits 101 during the install so no
# packaged service starts; removed afterwards only if this script made it).
# Everything it starts it starts itself, on free loopback ports, under a
# temporary directory, and stops by PID.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
GO=${GO:-go}
SMOKE=${SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
	REPS=${REPS:-1} DURATION=${DURATION:-1s} SERIAL_DURATION=${SERIAL_DURATION:-1s} WARMUP=${WARMUP:-200ms}
	RATES=${RATES:-"200 500"} RATE_DURATION=${RATE_DURATION:-1s}
	CONNS=${CONNS:-8} STREAMS=${STREAMS:-16} OPEN_STREAMS=${OPEN_STREAMS:-50} BIG_STREAMS=${BIG_STREAMS:-0}
else
	REPS=${REPS:-3} DURATION=${DURATION:-10s} SERIAL_DURATION=${SERIAL_DURATION:-5s} WARMUP=${WARMUP:-1s}
	RATES=${RATES:-"1000 2000 5000 10000 20000"} RATE_DURATION=${RATE_DURATION:-3s}
	CONNS=${CONNS:-64} STREAMS=${STREAMS:-256} OPEN_STREAMS=${OPEN_STREAMS:-1000} BIG_STREAMS=${BIG_STREAMS:-10000}
fi
OPEN_CONNS=${OPEN_CONNS:-64}
WORK=$(mktemp -d /tmp/glmctl-bench-proxy.XXXXXX)
chmod 755 "$WORK" # nginx's workers run as www-data
LOADGEN=$WORK/loadgen
if [[ $SMOKE == 1 ]]; then
	OUTDIR=$WORK
	SVG=$WORK/bench-proxy-latency.svg
else
	OUTDIR=$ROOT/bench/proxy
	SVG=$ROOT/docs/bench-proxy-latency.svg
fi
JSONL=$OUTDIR/results.jsonl
CLK=$(getconf CLK_TCK)
KEY=sk-bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
MADE_POLICY=0

declare -A PIDS=() # name → PID of everything started in the background
declare -A ADDR=() # path → host:port the load generator sends to

log() { echo "bench-proxy $(date +%T): $*" >&2; }
die() {
	echo "bench-proxy: error: $*" >&2
	exit 1
}

# start NAME CMD…: run CMD in the background, its output in $WORK/NAME.out.
start() {
	local name=$1
	shift
	"$@" >"$WORK/$name.out" 2>&1 &
	PIDS[$name]=$!
}

# stop NAME: SIGTERM, up to 10 s, then SIGKILL; by PID only.
stop() {
	local name=$1 pid i
	pid=${PIDS[$name]:-}
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	unset "PIDS[$name]"
}

cleanup() {
	local name
	for name in "${!PIDS[@]}"; do
		stop "$name"
	done
	if ((MADE_POLICY)); then
		rm -f /usr/sbin/policy-rc.d
	fi
	if [[ ${KEEP:-0} == 1 ]]; then
		echo "work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# alive NAME: die with its output if it has exited.
alive() {
	local pid=${PIDS[$1]:-}
	if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
		tail -n 20 "$WORK/$1.out" >&2 || true
		die "$1 is not running"
	fi
}

ensure_nginx() {
	if command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]]; then
		return 0
	fi
	[[ $(id -u) == 0 ]] || die "nginx is not installed: run as root (the script installs nginx-light) or apt-get install nginx-light"
	log "installing nginx-light from Debian"
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\n# bench/proxy/bench.sh: no packaged service starts during the install\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		MADE_POLICY=1
	fi
	local rc=0
	DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >"$WORK/apt.out" 2>&1 || rc=$?
	if ((MADE_POLICY)); then
		rm -f /usr/sbin/policy-rc.d
		MADE_POLICY=0
	fi
	((rc == 0)) || {
		tail -n 20 "$WORK/apt.out" >&2
		die "apt-get install nginx-light failed"
	}
}

NGINX=nginx
command -v nginx >/dev/null || NGINX=/usr/sbin/nginx

# ------------------------------------------------------------------- upstream
# Two stand-ins for the whole run: "fast" (streams of 64 tokens 1 ms apart;
# max_tokens 1 answers at once) and "slow" (a token every 10 s: streams stay
# open for the memory measures).
start_stubs() {
	local fast slow
	read -r fast slow < <("$LOADGEN" freeport -n 2 | paste -sd' ')
	start stub-fast "$GLMCTL" stub vllm --listen "127.0.0.1:$fast" --itl 1ms --reply-tokens 64 --max-model-len 1000000 --log-level error
	start stub-slow "$GLMCTL" stub vllm --listen "127.0.0.1:$slow" --itl 10s --reply-tokens 1000 --max-model-len 1000000 --log-level error
	STUB_FAST=127.0.0.1:$fast
	STUB_SLOW=127.0.0.1:$slow
	"$LOADGEN" wait -addr "$STUB_FAST" || die "stand-in upstream did not start"
	"$LOADGEN" wait -addr "$STUB_SLOW" || die "slow stand-in upstream did not start"
	ADDR[direct]=$STUB_FAST
}

# ---------------------------------------------------------------------- nginx
# nginx_up NAME UPSTREAM: nginx in the foreground (daemon off) as our child,
# config from nginx.conf.tmpl, everything under $WORK/NAME.
nginx_up() {
	local name=$1 upstream=$2 dir=$WORK/$1 port
	port=$("$LOADGEN" freeport)
	mkdir -p "$dir/tmp"
	chmod 755 "$dir"
	local wc=$((NOFILE - 64))
	((wc > 32768)) && wc=32768
	sed -e "s|@DIR@|$dir|g" -e "s|@LISTEN@|127.0.0.1:$port|g" -e "s|@UPSTREAM@|$upstream|g" \
		-e "s|@KEY@|$KEY|g" -e "s|@NOFILE@|$NOFILE|g" -e "s|@CONNECTIONS@|$wc|g" \
		"$ROOT/bench/proxy/nginx.conf.tmpl" >"$dir/nginx.conf"
	"$NGINX" -t -q -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" || die "nginx -t failed for $dir/nginx.conf"
	start "$name" "$NGINX" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
	ADDR[$name]=127.0.0.1:$port
	"$LOADGEN" wait -any -addr "${ADDR[$name]}" || {
		tail -n 20 "$dir/error.log" >&2
		die "nginx did not start"
	}
	alive "$name"
}

# --------------------------------------------------------------------- glmctl
# glmctl_up NAME UPSTREAM AUDIT(on|off) [MAX_CONNECTIONS]: `glmctl up -c`
# with a guard only, everything under $WORK/NAME.
glmctl_up() {
	local name=$1 upstream=$2 audit=$3 maxconn=${4:-} dir=$WORK/$1 port mport
	read -r port mport < <("$LOADGEN" freeport -n 2 | paste -sd' ')
	mkdir -p "$dir"
	# One key, stored hashed: written in clear, then `glmctl keys hash`.
	printf '{"api_keys": {"bench": "%s"}}\n' "$KEY" >"$dir/api_keys.json"
	chmod 600 "$dir/api_keys.json"
	"$GLMCTL" keys hash --file "$dir/api_keys.json" >/dev/null 2>&1 || die "glmctl keys hash failed"
	! grep -q "$KEY" "$dir/api_keys.json" || die "keys file still holds the clear key"
	# Limits that are evaluated on every request but never reject.
	cat >"$dir/rate_limits.json" <<'EOF'
{
  "rate_limits": {
    "default": { "rpm": 1000000000, "tpm": 1000000000000, "concurrency": 1000000 },
    "bench":   { "rpm": 1000000000, "tpm": 1000000000000, "concurrency": 1000000 }
  }
}
EOF
	{
		cat <<EOF
# Generated by bench/proxy/bench.sh: a guard in front of the stand-in.
log {
  level  = "warn"
  format = "text"
}

control {
  socket = "$dir/glmctl.sock"
}

metrics {
  listen = "127.0.0.1:$mport"
}

guard {
  listen        = "127.0.0.1:$port"
  upstream      = "http://$upstream"
  keys_file     = "$dir/api_keys.json"
  limits_file   = "$dir/rate_limits.json"
  drain_timeout = "0s"
EOF
		[[ -n $maxconn ]] && echo "  max_connections = $maxconn"
		echo "}"
		if [[ $audit == on ]]; then
			cat <<EOF

audit {
  path  = "$dir/audit.log"
  fsync = "interval"
  level = "metadata"
}
EOF
		fi
	} >"$dir/glmctl.hcl"
	start "$name" "$GLMCTL" up -c "$dir/glmctl.hcl"
	ADDR[$name]=127.0.0.1:$port
	"$LOADGEN" wait -addr "${ADDR[$name]}" || {
		tail -n 20 "$WORK/$name.out" >&2
		die "glmctl did not start"
	}
	alive "$name"
}

# ---------------------------------------------------------------- measuring
# pid_flags PATH: the proxy processes whose CPU and RSS count.
pid_flags() {
	case $1 in
	direct) ;;
	nginx*) echo "-pids ${PIDS[$1]} -children" ;;
	glmctl*) echo "-pids ${PIDS[$1]}" ;;
	esac
}

# lg CMD MEASURE PATH REP FLAGS…: one load generator run, result appended to
# $JSONL. PATH may be an instance name (nginx-mem…) given as LABEL=INSTANCE.
lg() {
	local cmd=$1 measure=$2 spec=$3 rep=$4
	shift 4
	local label=${spec%%=*} inst=${spec#*=}
	if [[ $inst == direct ]]; then alive stub-fast; else alive "$inst"; fi
	# shellcheck disable=SC2046
	"$LOADGEN" "$cmd" -addr "${ADDR[$inst]}" -key "$KEY" -measure "$measure" -path "$label" -rep "$rep" \
		-clk-tck "$CLK" -out "$JSONL" $(pid_flags "$inst") "$@" >/dev/null
}

# order REP PATHS…: the paths rotated by REP, so each goes first in turn.
order() {
	local rep=$1
	shift
	local -a p=("$@")
	local n=${#p[@]} i
	for ((i = 0; i < n; i++)); do
		echo "${p[$(((i + rep) % n))]}"
	done
}

check_path() {
	local name=$1 extra=${2:-}
	# shellcheck disable=SC2086
	"$LOADGEN" check -addr "${ADDR[$name]}" -key "$KEY" $extra >&2 || die "$name: the check failed"
}

rep_main() {
	local rep=$1 p
	log "repetition $rep/$REPS: chat, one at a time, streams, open loop"
	nginx_up nginx "$STUB_FAST"
	glmctl_up glmctl "$STUB_FAST" on
	glmctl_up glmctl-noaudit "$STUB_FAST" off
	check_path direct
	check_path nginx -auth
	check_path glmctl -auth
	check_path glmctl-noaudit -auth
	for p in $(order "$rep" direct nginx glmctl glmctl-noaudit); do
		lg closed chat64 "$p=$p" "$rep" -kind chat -conns "$CONNS" -warmup "$WARMUP" -duration "$DURATION"
	done
	for p in $(order "$rep" direct nginx glmctl); do
		lg closed serial "$p=$p" "$rep" -kind chat -conns 1 -warmup "$WARMUP" -duration "$SERIAL_DURATION"
	done
	for p in $(order "$rep" direct nginx glmctl); do
		lg closed stream256 "$p=$p" "$rep" -kind stream -conns "$STREAMS" -warmup "$WARMUP" -duration "$DURATION"
	done
	local rate i=$rep
	for rate in $RATES; do
		for p in $(order "$i" direct nginx glmctl); do
			lg open open "$p=$p" "$rep" -rate "$rate" -duration "$RATE_DURATION" -conns "$OPEN_CONNS" -drain 5s
		done
		i=$((i + 1))
	done
	stop nginx
	stop glmctl
	stop glmctl-noaudit
}

# rep_memory REP: fresh proxies in front of the slow stand-in; RSS idle,
# then with OPEN_STREAMS streams open.
rep_memory() {
	local rep=$1 p
	log "repetition $rep/$REPS: memory per open stream ($OPEN_STREAMS open)"
	for p in $(order "$rep" nginx glmctl); do
		case $p in
		nginx) nginx_up nginx-mem "$STUB_SLOW" ;;
		glmctl) glmctl_up glmctl-mem "$STUB_SLOW" on ;;
		esac
		sleep 1
		lg hold hold1000 "$p=$p-mem" "$rep" -n "$OPEN_STREAMS" -max-tokens 1000
		stop "$p-mem"
	done
}

# big_memory: as many open streams as RLIMIT_NOFILE lets every process hold
# (the proxy holds two descriptors per stream, glmctl keeps 256 spare), up
# to BIG_STREAMS.
big_memory() {
	local n=$BIG_STREAMS max=$(((NOFILE - 256) / 2 - 16)) p
	((n > max)) && n=$max
	log "10,000-stream check: $n streams open (RLIMIT_NOFILE $NOFILE; target $BIG_STREAMS)"
	for p in nginx glmctl; do
		case $p in
		nginx) nginx_up nginx-big "$STUB_SLOW" ;;
		glmctl) glmctl_up glmctl-big "$STUB_SLOW" on $((n + 16)) ;;
		esac
		sleep 1
		lg hold hold10k "$p=$p-big" 0 -n "$n" -max-tokens 1000 -parallel 64 -settle 3s ||
			log "$p: hold of $n streams failed"
		stop "$p-big"
	done
}

main() {
	ensure_nginx
	if [[ -z ${GLMCTL:-} ]]; then
		GLMCTL=$WORK/glmctl
		"$GO" build -o "$GLMCTL" ./cmd/glmctl
	fi
	[[ -x $GLMCTL ]] || die "GLMCTL=$GLMCTL is not an executable"
	"$GO" build -o "$LOADGEN" ./bench/proxy/loadgen
	LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	NOFILE=$(ulimit -n)
	: >"$JSONL"

	local nver gver
	nver=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
	gver=$("$GLMCTL" version 2>/dev/null | head -1 | sed 's/^glmctl //')
	log "$(nproc) cores, $(uname -sr); $nver; glmctl $gver; RLIMIT_NOFILE $NOFILE; REPS=$REPS DURATION=$DURATION"
	start_stubs

	local rep
	for ((rep = 1; rep <= REPS; rep++)); do
		rep_main "$rep"
		rep_memory "$rep"
	done
	((BIG_STREAMS > 0)) && big_memory

	local header=$WORK/header.md mode="full run"
	[[ $SMOKE == 1 ]] && mode="SMOKE run (tiny loads: not figures)"
	cat >"$header" <<EOF
Proxy benchmark, $mode: \`bench/proxy/bench.sh\` on $(date -u +%Y-%m-%d) — $(nproc) cores, $(uname -sr), load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end;
$nver (2 workers); glmctl $gver; stand-in \`glmctl stub vllm\` over loopback TCP; load generator bench/proxy/loadgen.
REPS=$REPS DURATION=$DURATION SERIAL_DURATION=$SERIAL_DURATION CONNS=$CONNS STREAMS=$STREAMS OPEN_STREAMS=$OPEN_STREAMS BIG_STREAMS=$BIG_STREAMS RATES="$RATES" RATE_DURATION=$RATE_DURATION.
EOF
	local rc=0
	"$LOADGEN" report -in "$JSONL" -header "$header" -md "$OUTDIR/results.md" -csv "$OUTDIR/latency.csv" -svg "$SVG" \
		-conns "$CONNS" -streams "$STREAMS" -open-streams "$OPEN_STREAMS" \
		-note "$(date -u +%Y-%m-%d), $(nproc) cores shared by load generator, stand-in and proxy; $OPEN_CONNS connections; median of $REPS; $nver; glmctl ${gver%% *}" || rc=$?
	log "results: $OUTDIR/results.md, $JSONL, $OUTDIR/latency.csv, $SVG"
	return $rc
}

main "$@"
