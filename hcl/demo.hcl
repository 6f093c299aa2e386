# demo.hcl — glmctl on any Linux machine, as any user, on loopback only.
#
# The model server and the web UI are glmctl's own stand-ins (glmctl stub …),
# run through the glmctl binary itself (glmctl_bin), so no GPU, Python or
# model download is needed. All state lives under /tmp/glmctl-demo/.
#
#   glmctl up --demo                  # this file, embedded in the binary
#   glmctl status --demo              # or: glmctl status -c hcl/demo.hcl
#   curl -H "Authorization: Bearer $(cat /tmp/glmctl-demo/demo.key)" http://127.0.0.1:8000/v1/models
#
# On its first start `glmctl up --demo` writes the keys and limits files named
# in the guard block: a "demo" user key and a "webui" service key, stored
# hashed, their secrets in /tmp/glmctl-demo/demo.key and ui.key (0600).

log {
  level  = "info"
  format = "text"
}

control {
  socket = "/tmp/glmctl-demo/glmctl.sock"
}

metrics {
  listen = "127.0.0.1:9400"
}

# No NVML here: warn and go on.
gpu {
  required = false
}

# The vLLM stand-in: answers on a unix socket after a 3 s "model load",
# refusing connections until then, like vLLM does.
program "vllm" {
  command = [
    glmctl_bin, "stub", "vllm",
    "--uds", "/tmp/glmctl-demo/vllm.sock",
    "--load-time", "3s",
  ]
  restart       = "always"
  start_timeout = "2m"
  stop_timeout  = "10s"

  backoff {
    initial = "1s"
    max     = "30s"
  }

  health {
    http        = "http://localhost/health"
    unix_socket = "/tmp/glmctl-demo/vllm.sock"
    interval    = "2s"
    timeout     = "1s"
    failures    = 3
  }

  log {
    path     = "/tmp/glmctl-demo/vllm.log"
    max_size = "10MiB"
    keep     = 3
  }
}

# The web UI stand-in, a client of the guard like any other, with its own
# service key.
program "ui" {
  command = [
    glmctl_bin, "stub", "webui",
    "--listen", "127.0.0.1:7860",
    "--api-base", "http://127.0.0.1:8000/v1",
    "--api-key-file", "/tmp/glmctl-demo/ui.key",
  ]
  depends_on = ["vllm"]

  health {
    tcp      = "127.0.0.1:7860"
    interval = "5s"
    timeout  = "2s"
  }

  log {
    path     = "/tmp/glmctl-demo/ui.log"
    max_size = "10MiB"
    keep     = 3
  }
}

guard {
  listen             = "127.0.0.1:8000"
  upstream           = "unix:///tmp/glmctl-demo/vllm.sock"
  program            = "vllm"
  keys_file          = "/tmp/glmctl-demo/api_keys.json"
  limits_file        = "/tmp/glmctl-demo/rate_limits.json"
  max_body           = "4MiB"
  default_max_tokens = 1024
  drain_timeout      = "5s"

  global {
    rpm         = 600
    concurrency = 32
  }
}

audit {
  path     = "/tmp/glmctl-demo/audit.log"
  on_error = "reject"
  fsync    = "interval"
  level    = "metadata"

  rotate {
    max_size = "10MiB"
    keep     = 5
    compress = true
  }
}
