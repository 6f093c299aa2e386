# Paths are absolute: a relative one would be read from wherever glmctl
# starts (systemd starts it in /), so a file that loads from a shell would
# fail under the service.
control { socket = "glmctl.sock" }
program "vllm" {
  command   = ["./serve.sh"]          # relative to directory: the program's own business
  directory = "glm"
  log { path = "vllm.log" }
}
guard {
  upstream    = "unix:///run/glmctl/vllm.sock"
  keys_file   = "api_keys.json"
  limits_file = "./rate_limits.json"
  tls {
    cert = "cert.pem"
    key  = "/etc/glmctl/tls/key.pem"
  }
}
audit {
  path          = "audit.log"
  hmac_key_file = "audit.key"
}
