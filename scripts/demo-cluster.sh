#!/usr/bin/env bash
# make demo-cluster: two glmctl boxes (each with its own stand-in vLLM) that
# share one set of limits through one local redis-server. It sends 20
# requests alternating between the two guards against a key limited to
# rpm 10 and shows that 10 pass in all (not 10 per box), then keeps running
# until Ctrl-C. Everything it starts it stops, by PID.
set -euo pipefail
GLMCTL=${GLMCTL:-bin/glmctl}
command -v redis-server >/dev/null || { echo "redis-server not found: apt-get install redis-server" >&2; exit 1; }
dir=$(mktemp -d /tmp/glmctl-cluster.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
pids+=($!)

key="sk-demo-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
hash=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
printf '{"api_keys": {"demo": {"sha256": "%s"}}}\n' "$hash" >"$dir/api_keys.json"
printf '{"rate_limits": {"demo": {"rpm": 10}}}\n' >"$dir/rate_limits.json"
chmod 600 "$dir"/*.json

ports=()
for box in a b; do
  port=$(free_port)
  ports+=("$port")
  mkdir -p "$dir/$box"
  cat >"$dir/$box/glmctl.hcl" <<HCL
control { socket = "$dir/$box/glmctl.sock" }
program "vllm" {
  command = [glmctl_bin, "stub", "vllm", "--uds", "$dir/$box/vllm.sock"]
  health {
    http        = "http://localhost/health"
    unix_socket = "$dir/$box/vllm.sock"
    interval    = "1s"
    timeout     = "500ms"
  }
}
guard {
  listen       = "127.0.0.1:$port"
  upstream     = "unix://$dir/$box/vllm.sock"
  program      = "vllm"
  keys_file    = "$dir/api_keys.json"
  limits_file  = "$dir/rate_limits.json"
  limits_store = "redis://127.0.0.1:$rport/0"
}
audit { path = "$dir/$box/audit.log" }
HCL
  "$GLMCTL" up -c "$dir/$box/glmctl.hcl" >"$dir/$box/glmctl.log" 2>&1 &
  pids+=($!)
done

for port in "${ports[@]}"; do
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.1
  done
done

declare -A got
for i in $(seq 1 20); do
  port=${ports[$((i % 2))]}
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/models" -H "Authorization: Bearer $key")
  got[$code]=$(( ${got[$code]:-0} + 1 ))
done
echo "20 requests, alternating between 127.0.0.1:${ports[0]} and 127.0.0.1:${ports[1]}, key limited to rpm 10:"
for code in "${!got[@]}"; do echo "  $code: ${got[$code]}"; done
echo "Boxes: ${dir}/a and ${dir}/b (glmctl status -c ${dir}/a/glmctl.hcl); key: $key"
echo "Ctrl-C stops everything."
wait "${pids[1]}"
