# glmctl configuration converted from glm47flash.conf by glmctl import supervisor.
# Lines marked "glmctl import:" were changed or not carried over: review them.

log {
  # glmctl import: from vLLM's --log-level info (removed from the vLLM command)
  level = "info"
}

metrics {
  # glmctl import: added: Prometheus metrics on loopback (glmctl check --live probes /metrics here)
  listen = "127.0.0.1:9400"
}

program "glm_vllm" {
  # glmctl import: removed from the vLLM command: --api-key, --limit, --log-level, --log-format, --log-file, --host, --port (glmctl's guard, audit and log do that now; vLLM has no --limit, --log-format or --log-file)
  # glmctl import: added --uds /run/glmctl/vllm.sock: vLLM serves only on this socket, so nothing reaches it around the guard
  # glmctl import: backslash continuations joined into one command (supervisord does not join them; the tutorial meant one line)
  command = [
    "/usr/local/bin/python3", "-m", "vllm.entrypoints.openai.api_server",
    "--model", "/root/.cache/huggingface/ZhipuAI/GLM-4.7-Flash",
    "--tensor-parallel-size", "4",
    "--max-model-len", "4096",
    "--max-num-seqs", "50",
    "--max-num-batched-tokens", "2048",
    "--uds", "/run/glmctl/vllm.sock",
  ]
  directory = "/root"
  # glmctl import: from --tensor-parallel-size 4: GPUs 0-3 (sets CUDA_VISIBLE_DEVICES; the preflight checks them): adjust if vLLM should use others
  gpus = [0, 1, 2, 3]
  # glmctl import: priority=10 dropped: glmctl orders starts by depends_on
  restart = "always"
  # glmctl import: startsecs=10 dropped: the health probe below decides when vLLM is ready
  # glmctl import: startretries=3: glmctl gives up (FATAL) after 3 failed starts within 60 s, with capped backoff
  start_retries = 3
  # glmctl import: added: the model load may take many minutes; refused connections until then mean still loading
  start_timeout = "30m"
  stop_signal = "SIGTERM"
  stop_timeout = "30s"
  # glmctl import: added: readiness and liveness through vLLM's /health on its socket
  health {
    http = "http://localhost/health"
    unix_socket = "/run/glmctl/vllm.sock"
    interval = "10s"
    timeout = "5s"
    failures = 3
  }
  # glmctl import: redirect_stderr=true: glmctl always captures stdout and stderr together
  log {
    path = "/root/workspace/glm_vllm.log"
    # glmctl import: stdout_logfile_maxbytes=50MB: supervisord's MB is 1024×1024 bytes, glmctl's MiB
    max_size = "50MiB"
    keep = 5
  }
}

program "glm_ui" {
  # glmctl import: --api-base http://127.0.0.1:8000/v1 now reaches the guard, which checks the key, the limits and audits
  command = [
    "/usr/local/bin/python3", "/root/workspace/webui.py",
    "--port", "7860",
    "--api-base", "http://127.0.0.1:8000/v1",
  ]
  directory = "/root/workspace"
  # glmctl import: added OPENAI_API_KEY_FILE: this program's own key "glm_ui-service" for the guard
  env = { "OPENAI_API_KEY_FILE" = "/srv/glmctl-import/ui.key" }
  # glmctl import: priority=20: starts after "glm_vllm" as before, and now waits until it is healthy
  depends_on = ["glm_vllm"]
  restart = "always"
  start_secs = "5s"
  # glmctl import: redirect_stderr=true: glmctl always captures stdout and stderr together
  log {
    path = "/root/workspace/glm_ui.log"
  }
}

guard {
  # glmctl import: vLLM's --host/--port: clients reach the guard here, vLLM only through the unix socket below
  # glmctl import: listening beyond loopback without TLS: add tls { cert = … key = … } or keep a TLS proxy in front
  listen = "0.0.0.0:8000"
  upstream = "unix:///run/glmctl/vllm.sock"
  program = "glm_vllm"
  # glmctl import: new file, hashed keys only: vLLM's --api-key and the tutorial's keys file merged
  keys_file = "/srv/glmctl-import/api_keys.json"
  # glmctl import: the tutorial's per-key limits, used where they are (nothing read them before)
  limits_file = "/etc/vllm/rate_limits.json"
  global {
    # glmctl import: vLLM's --limit 100 (vLLM has no such flag; argparse may take it for another): now a real global limit
    rpm = 100
  }
}

audit {
  # glmctl import: from vLLM's --log-file (not a vLLM flag): one JSON line per request, hash-chained
  path = "/var/log/vllm/audit.log"
  rotate {
    # glmctl import: glmctl rotates the audit log itself: remove any logrotate rule for it (copytruncate loses records)
    daily = true
    keep = 30
  }
}
