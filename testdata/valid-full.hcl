# Every attribute of the schema, none at its default.
log {
  level  = "debug"
  format = "json"
}

control {
  socket = "/tmp/glmctl/ctl.sock"
}

metrics {
  listen            = "127.0.0.1:9500"
  bearer_token_file = "/etc/glmctl/metrics.token"
}

gpu {
  required        = false
  count           = 4
  min_free_memory = "70GiB"
  release_timeout = "90s"
  restart_on_xid  = true
}

program "vllm" {
  command       = ["python3", "-m", "vllm.entrypoints.openai.api_server", "--uds", "/run/glmctl/vllm.sock"]
  directory     = "/srv/glm"
  user          = "glm"
  env           = { VLLM_ENGINE_READY_TIMEOUT_S = "1800" }
  gpus          = [0, 1, 2, 3]
  restart       = "on-failure"
  start_secs    = "0s"
  start_retries = 3
  start_timeout = "20m"
  stop_signal   = "INT"
  stop_timeout  = "60s"
  backoff {
    initial = "2s"
    max     = "1m"
  }
  health {
    http        = "http://localhost/health"
    unix_socket = "/run/glmctl/vllm.sock"
    interval    = "15s"
    timeout     = "3s"
    failures    = 5
  }
  log {
    path     = "/var/log/glmctl/vllm.log"
    max_size = "1GB"
    keep     = 4
  }
  autostart = false
}

program "ui" {
  command    = ["python3", "/srv/glm/webui.py"]
  depends_on = ["vllm"]
  restart    = "never"
  health {
    exec = ["/usr/bin/curl", "-fsS", "http://127.0.0.1:7860/"]
  }
}

program "probe" {
  command    = ["sleep", "infinity"]
  depends_on = ["vllm", "ui"]
  health {
    tcp = "127.0.0.1:7860"
  }
}

guard {
  listen                = "0.0.0.0:8000"
  upstream              = "unix:///run/glmctl/vllm.sock"
  allow_remote_upstream = false
  program               = "vllm"
  keys_file             = "/etc/vllm/api_keys.json"
  limits_file           = "/etc/vllm/rate_limits.json"
  limits_store          = ""
  max_body              = 1048576
  default_max_tokens    = 512
  trusted_proxies       = ["127.0.0.1/32"]
  drain_timeout         = "0s"
  max_model_len         = 8192
  max_connections       = 2000
  max_unauthenticated_per_client = 8
  header_timeout        = "5s"
  body_timeout          = "20s"
  idle_timeout          = "30s"
  global {
    rpm         = 100
    concurrency = 50
  }
  tls {
    cert = "/etc/glmctl/cert.pem"
    key  = "/etc/glmctl/key.pem"
  }
}

audit {
  path          = "/var/log/glmctl/audit.jsonl"
  on_error      = "continue"
  fsync         = "always"
  level         = "request_response"
  hmac_key_file = "/etc/glmctl/audit.key"
  rotate {
    max_size = 0
    daily    = true
    keep     = 7
    compress = false
  }
}
