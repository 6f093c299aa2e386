#!/usr/bin/env bash
# bench/supervisord/bench.sh — supervisord 4.2.5 (Debian's `supervisor`) and
# glmctl supervising the same crashing program, the stand-in vLLM
# (cmd/vllm-stub), measured the same way:
#
#   crash→restart  from the crashed process's last act (its "crash" event) to
#                  the replacement's first act (its "start" event), both
#                  written by the stand-in itself with nanosecond timestamps
#                  (--events-file), so the figure is the supervisor's reaction
#                  plus one fork/exec and Go runtime start;
#   crash→ready    from the crash to the replacement accepting connections;
#   status         wall time of one `supervisorctl status` / `glmctl status`
#                  while the program is RUNNING;
#   idle RSS, PSS  of the daemon (and of its helper processes, not of the
#                  supervised program) with the program running, no crashes;
#   idle CPU       CPU time those processes used over IDLE_SECS, from
#                  /proc/PID/task/*/schedstat (nanoseconds), as a percentage of
#                  one core.
#
# Usage: bench/supervisord/bench.sh [supervisord] [glmctl]   (default: both
# that are available). Knobs (environment): CRASHES=10 CRASH_AFTER=1500ms
# STATUS_RUNS=20 IDLE_SECS=20 GLMCTL=path/to/glmctl (else built from
# ./cmd/glmctl) KEEP=1 (keep the work directory).
#
# Each supervisor is four functions, <sut>_up MODE DIR, <sut>_status DIR,
# <sut>_down DIR and <sut>_version; MODE is "crash" or "steady". Adding a
# supervisor is writing those four.
set -euo pipefail

cd "$(dirname "$0")/../.."
CRASHES=${CRASHES:-10}
CRASH_AFTER=${CRASH_AFTER:-1500ms} # > startsecs (1 s): every run counts as a good start
STATUS_RUNS=${STATUS_RUNS:-20}
IDLE_SECS=${IDLE_SECS:-20}
WORK=$(mktemp -d /tmp/glmctl-bench.XXXXXX)
STUB="$WORK/vllm-stub"
DIR="" # the work directory of the supervisor under test

cleanup() {
	local f
	for f in "$WORK"/*/daemon.pid; do
		[[ -f $f ]] && kill -KILL "$(cat "$f")" 2>/dev/null || true
	done
	if [[ ${KEEP:-0} == 1 ]]; then
		echo "work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

log() { echo "bench: $*" >&2; }
die() {
	echo "bench: error: $*" >&2
	exit 1
}
now_ns() { date +%s%N; }

# program_args MODE DIR: the supervised command line, one word per line.
program_args() {
	local mode=$1 dir=$2
	printf '%s\n' "$STUB" --uds "$dir/vllm.sock" --events-file "$dir/events"
	if [[ $mode == crash ]]; then
		printf '%s\n' --exit-after "$CRASH_AFTER" --exit-code 0
	fi
}

# ---------------------------------------------------------------- supervisord
supervisord_version() { supervisord --version; }

supervisord_up() {
	local mode=$1 dir=$2 cmd
	cmd=$(program_args "$mode" "$dir" | paste -sd' ')
	cat >"$dir/supervisord.conf" <<EOF
[unix_http_server]
file=$dir/supervisor.sock
chmod=0700

[supervisord]
nodaemon=true
logfile=$dir/supervisord.log
pidfile=$dir/supervisord.pid
childlogdir=$dir
loglevel=info

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://$dir/supervisor.sock

[program:vllm]
command=$cmd
autostart=true
autorestart=true
startsecs=1
startretries=3
stopasgroup=true
killasgroup=true
stopwaitsecs=10
stdout_logfile=$dir/vllm.log
redirect_stderr=true
EOF
	supervisord -n -c "$dir/supervisord.conf" >"$dir/daemon.out" 2>&1 &
	echo $! >"$dir/daemon.pid"
}

supervisord_status() { supervisorctl -c "$1/supervisord.conf" status vllm; }

supervisord_down() {
	local pid
	pid=$(cat "$1/daemon.pid")
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -f "$1/daemon.pid"
}

# --------------------------------------------------------------------- glmctl
# glmctl's config follows docs/DESIGN's schema; adjust here if the daemon
# wants more (the supervised program has no health probe, like supervisord's).
glmctl_version() { "$GLMCTL" version 2>/dev/null | head -1; }

glmctl_up() {
	local mode=$1 dir=$2 words
	words=$(program_args "$mode" "$dir" | sed 's/.*/"&"/' | paste -sd,)
	cat >"$dir/glmctl.hcl" <<EOF
log {
  level  = "info"
  format = "text"
}

control {
  socket = "$dir/glmctl.sock"
}

gpu {
  required = false
}

program "vllm" {
  command       = [$words]
  restart       = "always"
  start_secs    = "1s"
  start_retries = 3
  stop_timeout  = "10s"

  # Zero backoff: the issue's target is crash-to-restart with zero backoff
  # configured (supervisord restarts a program that was RUNNING at once too).
  backoff {
    initial = "0s"
    max     = "1s"
  }

  log {
    path = "$dir/vllm.log"
  }
}
EOF
	"$GLMCTL" up -c "$dir/glmctl.hcl" >"$dir/daemon.out" 2>&1 &
	echo $! >"$dir/daemon.pid"
}

glmctl_status() { "$GLMCTL" status -c "$1/glmctl.hcl" vllm; }

glmctl_down() {
	local pid
	pid=$(cat "$1/daemon.pid")
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -f "$1/daemon.pid"
}

# -------------------------------------------------------------- measurement
# wait_until SECONDS WHAT CMD…: poll CMD until it succeeds or time runs out;
# give up at once when the daemon of $DIR has died.
wait_until() {
	local secs=$1 what=$2
	shift 2
	local deadline=$(($(date +%s) + secs))
	until "$@" >/dev/null 2>&1; do
		(($(date +%s) < deadline)) || die "timed out after ${secs}s waiting for $what"
		if [[ -f $DIR/daemon.pid ]] && ! kill -0 "$(cat "$DIR/daemon.pid")" 2>/dev/null; then
			tail -n 20 "$DIR/daemon.out" >&2 || true
			die "the daemon died while waiting for $what"
		fi
		sleep 0.05
	done
}

count_events() {
	local n=0
	[[ -f $1 ]] && n=$(grep -c "^$2 " "$1" || true)
	echo "${n:-0}"
}
have_events() { (($(count_events "$1" "$2") >= $3)); }

# daemon_pids DIR: the daemon and its descendants, minus the supervised
# program (any process running the stand-in binary) and its descendants.
daemon_pids() {
	local root
	root=$(cat "$1/daemon.pid")
	local -A parent=()
	local stat pid rest
	for stat in /proc/[0-9]*/stat; do
		pid=${stat#/proc/}
		pid=${pid%/stat}
		rest=$(cat "$stat" 2>/dev/null) || continue
		rest=${rest##*) }
		parent[$pid]=$(echo "$rest" | cut -d' ' -f2)
	done
	local -a queue=("$root") out=()
	while ((${#queue[@]})); do
		pid=${queue[0]}
		queue=("${queue[@]:1}")
		[[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$STUB" ]] && continue
		out+=("$pid")
		for child in "${!parent[@]}"; do
			[[ ${parent[$child]} == "$pid" ]] && queue+=("$child")
		done
	done
	echo "${out[@]}"
}

# cpu_ns PIDS…: CPU time of all their threads, in nanoseconds.
cpu_ns() {
	local total=0 pid f ns
	for pid in "$@"; do
		for f in /proc/"$pid"/task/*/schedstat; do
			read -r ns _ <"$f" 2>/dev/null || continue
			total=$((total + ns))
		done
	done
	echo "$total"
}

# mem_kib FIELD PIDS…: sum of FIELD (Rss or Pss) from smaps_rollup.
mem_kib() {
	local field=$1 total=0 pid v
	shift
	for pid in "$@"; do
		v=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

# summary NAME UNIT: reads numbers (ns) on stdin, prints n, median, p90, max
# in milliseconds.
summary() {
	sort -n | awk -v name="$1" '
		{ v[NR] = $1 / 1e6 }
		END {
			if (NR == 0) { printf "  %-17s no samples\n", name; exit }
			p50 = v[int((NR + 1) / 2)]; p90 = v[int(NR * 0.9 + 0.999)]; if (p90 == "") p90 = v[NR]
			printf "  %-17s n=%-3d min %8.2f ms   median %8.2f ms   p90 %8.2f ms   max %8.2f ms\n", name, NR, v[1], p50, p90, v[NR]
		}'
}

# latencies EVENTS FROM TO: for each FROM event, time to the next TO event.
latencies() {
	awk -v from="$2" -v to="$3" '
		$1 == from { t = $2; next }
		$1 == to && t { printf "%.0f\n", $2 - t; t = 0 }' "$1"
}

bench() {
	local sut=$1 dir="$WORK/$1"
	DIR=$dir
	mkdir -p "$dir"
	log "$sut: $(${sut}_version)"

	# 1. Crash loop: the program exits 0 every CRASH_AFTER, like vLLM when its
	#    engine dies.
	: >"$dir/events"
	${sut}_up crash "$dir"
	local secs
	secs=$((CRASHES * 5 + 30))
	log "$sut: waiting for $CRASHES crashes and restarts (up to ${secs}s)"
	if ! (wait_until "$secs" "$CRASHES restarts under $sut" have_events "$dir/events" start $((CRASHES + 1))); then
		kill -0 "$(cat "$dir/daemon.pid")" 2>/dev/null || die "$sut died during the crash loop"
		log "$sut: only $(($(count_events "$dir/events" start) - 1)) restarts in ${secs}s; reporting those"
	fi
	${sut}_down "$dir"
	mv "$dir/events" "$dir/events.crash"

	# 2. Steady: the program stays up; status latency, then idle cost.
	${sut}_up steady "$dir"
	wait_until 60 "the program to be ready under $sut" have_events "$dir/events" ready 1
	wait_until 60 "$sut status to report it running" ${sut}_status "$dir"
	local i t0 t1
	: >"$dir/status.ns"
	for ((i = 0; i < STATUS_RUNS; i++)); do
		t0=$(now_ns)
		${sut}_status "$dir" >/dev/null || die "$sut status failed while the program runs"
		t1=$(now_ns)
		echo $((t1 - t0)) >>"$dir/status.ns"
	done
	sleep 2 # let the status connections settle before sampling idle cost
	local pids c0 c1 w0 w1
	read -r -a pids <<<"$(daemon_pids "$dir")"
	c0=$(cpu_ns "${pids[@]}")
	w0=$(now_ns)
	sleep "$IDLE_SECS"
	c1=$(cpu_ns "${pids[@]}")
	w1=$(now_ns)
	local rss pss
	rss=$(mem_kib Rss "${pids[@]}")
	pss=$(mem_kib Pss "${pids[@]}")
	${sut}_down "$dir"

	echo "$sut ($(${sut}_version))"
	latencies "$dir/events.crash" crash start | summary "crash_to_restart"
	latencies "$dir/events.crash" crash ready | summary "crash_to_ready"
	summary "status" <"$dir/status.ns"
	awk -v rss="$rss" -v pss="$pss" -v c=$((c1 - c0)) -v w=$((w1 - w0)) -v n="${#pids[@]}" -v s="$IDLE_SECS" '
		BEGIN { printf "  %-17s RSS %.1f MiB   PSS %.1f MiB   CPU %.3f%% of a core over %ss (%d process(es))\n",
			"idle", rss / 1024, pss / 1024, 100 * c / w, s, n }'
}

main() {
	local suts=("$@")
	if ((${#suts[@]} == 0)); then
		command -v supervisord >/dev/null && suts+=(supervisord)
		[[ -n ${GLMCTL:-} || -d cmd/glmctl ]] && suts+=(glmctl)
	fi
	go build -o "$STUB" ./cmd/vllm-stub
	local sut
	for sut in "${suts[@]}"; do
		case $sut in
		supervisord)
			command -v supervisord >/dev/null || die "supervisord not installed (apt-get install -y supervisor)"
			;;
		glmctl)
			if [[ -z ${GLMCTL:-} ]]; then
				GLMCTL="$WORK/glmctl"
				go build -o "$GLMCTL" ./cmd/glmctl
			fi
			;;
		*) die "unknown supervisor $sut (supervisord, glmctl)" ;;
		esac
	done
	echo "machine: $(nproc) cores, $(uname -sr); CRASHES=$CRASHES CRASH_AFTER=$CRASH_AFTER STATUS_RUNS=$STATUS_RUNS IDLE_SECS=$IDLE_SECS"
	for sut in "${suts[@]}"; do
		bench "$sut"
	done
}

main "$@"
