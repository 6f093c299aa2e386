# The Redis limits store's TLS settings: each is wrong in its own way.
guard {
  upstream               = "unix:///run/glmctl/vllm/vllm.sock"
  keys_file              = "/etc/glmctl/api_keys.json"
  limits_store           = "redis://10.0.0.5:6379/0"
  limits_store_ca_file   = "/etc/glmctl/redis-ca.pem"
  limits_store_cert_file = "/etc/glmctl/redis-client.pem"
}
