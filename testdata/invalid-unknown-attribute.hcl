program "vllm" {
  command      = ["vllm", "serve"]
  start_sec    = "10s"
  stopwaitsecs = "30s"
  autorestart  = true
}

guard {
  upstream = "unix:///run/glmctl/vllm.sock"
  keyfile  = "/etc/glmctl/api_keys.json"
}
