# glm-4.7-flash.hcl — the real box: GLM-4.7-Flash served by vLLM across four
# GPUs, a chat web UI, and the guard in front of both. Install as
# /etc/glmctl/glmctl.hcl; systemd/glmctl.service runs `glmctl up` with it.
#
# What changed from the tutorial's supervisord + nginx setup:
#   - vLLM listens on a unix socket only the guard reaches (no --host/--port,
#     no --api-key): every request is authenticated, limited and audited by
#     the guard on :8000, per key, not per IP. The socket lives in
#     /run/glmctl/vllm/, a directory owned by the vLLM user "glm" with mode
#     0700 (systemd/glmctl.service creates it): glmctl (root) and vLLM can
#     enter it, no other local user can, so nobody goes around the guard.
#     The web UI runs as its own user ("glmui") for the same reason.
#   - The tutorial's --limit, --log-format and --log-file are not vLLM flags
#     and are gone; rate limits live in rate_limits.json, the audit trail in
#     audit.log (hash-chained, rotated by glmctl itself: no copytruncate).
#   - The tutorial's key and limit files load unchanged; they are expected in
#     /etc/glmctl/ (copy them from /etc/vllm/).

log {
  level  = "info"
  format = "json" # one JSON object per line, for journald and log shippers
}

control {
  socket = "/run/glmctl/glmctl.sock" # mode 0600; `glmctl status` talks here
}

metrics {
  listen = "127.0.0.1:9400" # scrape from the box, or front it with a token:
  # bearer_token_file = "/etc/glmctl/metrics.token"
}

gpu {
  required        = true    # refuse to start the model without NVML and all GPUs
  count           = 4
  min_free_memory = "70GiB" # per GPU, checked before vLLM starts
  release_timeout = "2m"    # wait this long for a stopped vLLM to free the GPUs
}

program "vllm" {
  command = [
    "/usr/local/bin/python3", "-m", "vllm.entrypoints.openai.api_server",
    "--model", "/models/GLM-4.7-Flash", # the tutorial's /root/.cache/huggingface/ZhipuAI/GLM-4.7-Flash
    "--tensor-parallel-size", "4",
    "--max-model-len", "4096",
    "--max-num-seqs", "50",
    "--max-num-batched-tokens", "2048",
    "--uds", "/run/glmctl/vllm/vllm.sock",
  ]
  directory = "/srv/glm"
  user      = "glm"
  env = {
    VLLM_ENGINE_READY_TIMEOUT_S = "1800"
  }
  gpus          = [0, 1, 2, 3] # sets CUDA_VISIBLE_DEVICES; preflight checks these
  restart       = "always"     # vLLM can exit 0 when its engine dies: restart anyway
  start_retries = 5
  start_timeout = "30m"        # weights, torch.compile and CUDA graphs take a while
  stop_signal   = "SIGTERM"
  stop_timeout  = "60s"        # then SIGKILL to every process of the program

  backoff {
    initial = "5s"
    max     = "5m"
  }

  # Connection refused while the model loads counts as "still starting".
  health {
    http        = "http://localhost/health"
    unix_socket = "/run/glmctl/vllm/vllm.sock"
    interval    = "10s"
    timeout     = "5s"
    failures    = 3
  }

  log {
    path     = "/var/log/glmctl/vllm.log"
    max_size = "100MiB"
    keep     = 10
  }
}

program "ui" {
  command = [
    "/usr/local/bin/python3", "/srv/glm/webui.py",
    "--port", "7860",
    "--api-base", "http://127.0.0.1:8000/v1", # through the guard, like any client
  ]
  directory = "/srv/glm"
  user      = "glmui" # not "glm": the UI must not reach vLLM's socket around the guard
  env = {
    OPENAI_API_KEY_FILE = "/etc/glmctl/ui.key" # a key of its own, from `glmctl keys new ui`
  }
  depends_on = ["vllm"] # started once vllm is RUNNING (healthy)

  health {
    tcp = "127.0.0.1:7860"
  }

  log {
    path = "/var/log/glmctl/ui.log"
  }
}

guard {
  listen                = "0.0.0.0:8000"
  upstream              = "unix:///run/glmctl/vllm/vllm.sock"
  allow_remote_upstream = false
  program               = "vllm" # 503 + Retry-After while vllm is not RUNNING
  keys_file             = "/etc/glmctl/api_keys.json"
  limits_file           = "/etc/glmctl/rate_limits.json"
  max_body              = "4MiB"
  default_max_tokens    = 1024 # reserved when a request names no max_tokens
  trusted_proxies       = []   # CIDRs whose X-Forwarded-For is believed
  drain_timeout         = "30s"

  # The tutorial's nginx allowed 60 requests a minute per IP; per-key limits
  # are in rate_limits.json, this caps the whole box.
  global {
    rpm         = 600
    concurrency = 50 # vLLM's --max-num-seqs
  }

  # tls {
  #   cert = "/etc/glmctl/tls/cert.pem"
  #   key  = "/etc/glmctl/tls/key.pem"
  # }
}

audit {
  path          = "/var/log/glmctl/audit.log"
  on_error      = "reject"   # 503 when a record can't be written
  fsync         = "interval"
  level         = "metadata"
  hmac_key_file = ""         # set to key the hash chain

  rotate {
    max_size = "100MiB"
    daily    = true
    keep     = 30 # the tutorial's logrotate kept 30 days
    compress = true
  }
}
