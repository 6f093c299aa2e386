# DESIGN.md's "Config contract" example, with one attribute per line (HCL
# does not allow several on one line) and its commented-out tls block on.
log {
  level  = "info"
  format = "json"
}                                                           # glmctl's own log (go-hclog)
control { socket = "/run/glmctl/glmctl.sock" }              # 0600; the CLI talks here
metrics {
  listen            = "127.0.0.1:9400"
  bearer_token_file = ""
}

gpu {
  required        = true          # false: warn and go on when NVML or GPUs are missing
  count           = 4
  min_free_memory = "70GiB"       # per GPU, checked before the model starts
}

program "vllm" {
  command       = ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "/models/GLM-4.7-Flash",
                   "--tensor-parallel-size", "4", "--max-model-len", "4096", "--uds", "/run/glmctl/vllm.sock"]
  directory     = "/srv/glm"
  user          = "glm"
  env           = { VLLM_ENGINE_READY_TIMEOUT_S = "1800" }
  gpus          = [0, 1, 2, 3]    # sets CUDA_VISIBLE_DEVICES; preflight checks these
  restart       = "always"        # always (default) | on-failure | never
  start_secs    = "1s"            # without a probe: alive this long = RUNNING (default 1s)
  start_retries = 5               # failed starts within 60 s before FATAL (default 5)
  start_timeout = "30m"           # readiness window with a probe: refused = still loading
  stop_signal   = "SIGTERM"
  stop_timeout  = "60s"           # then SIGKILL to the whole program (all its descendants)
  backoff {
    initial = "1s"
    max = "5m"
  }
  health {
    http        = "http://localhost/health"
    unix_socket = "/run/glmctl/vllm.sock"   # like curl --unix-socket; omit for a TCP URL
    interval = "10s"
    timeout = "5s"
    failures = 3
  }
  # or: health { tcp = "127.0.0.1:8001" … }   health { exec = ["cmd", "arg"] … }
  log {
    path = "/var/log/glmctl/vllm.log"
    max_size = "100MiB"
    keep = 10
  }
}

program "ui" {
  command    = ["python3", "/srv/glm/webui.py", "--port", "7860"]
  env        = { OPENAI_API_KEY_FILE = "/etc/glmctl/ui.key" }   # the UI is a client of the guard too
  depends_on = ["vllm"]           # started only once vllm is RUNNING (healthy)
}

guard {
  listen             = "0.0.0.0:8000"
  upstream           = "unix:///run/glmctl/vllm.sock"   # or a loopback URL "http://127.0.0.1:8001"
  allow_remote_upstream = false
  program            = "vllm"     # 503 while this program is not RUNNING; no such program: no gating
  keys_file          = "/etc/glmctl/api_keys.json"
  limits_file        = "/etc/glmctl/rate_limits.json"
  limits_store       = ""         # "" = in-process; "redis://host:6379/0" = shared (later issue)
  max_body           = "4MiB"
  default_max_tokens = 1024       # reserved when a request names no max_tokens
  trusted_proxies    = []         # CIDRs whose X-Forwarded-For is believed
  drain_timeout      = "30s"
  global {
    rpm = 100
    concurrency = 50
  }   # absent: no global limit
  tls {
    cert = "/etc/glmctl/tls/cert.pem"
    key = "/etc/glmctl/tls/key.pem"
  }          # reloaded when the files change
}

audit {
  path          = "/var/log/glmctl/audit.log"
  on_error      = "reject"        # reject: 503 when a record can't be written | continue
  fsync         = "interval"      # always (group commit before forwarding) | interval | never
  level         = "metadata"      # metadata | request | request_response
  hmac_key_file = ""              # keys the hash chain and hmac-sha256: identifying strings
  rotate {
    max_size = "100MiB"
    daily = true
    keep = 30
    compress = true
  }
}

policy {                          # absent: no request policy; per-key overrides in the keys file
  max_prompt_tokens = 8000
  max_tokens        = 2000
  deny_params       = ["logprobs", "tools"]
  rule "no-credentials" {
    pattern = "(?i)BEGIN (RSA|OPENSSH) PRIVATE KEY"   # RE2
    action  = "reject"            # reject: 400 naming the rule | flag: served, marked in the audit
  }
  rule "watchlist" {
    literal = ["违禁词"]
    action  = "flag"
  }
}

program "env-commas" {
  command = ["env"]
  env     = { A = "1", B = "2" }
}
