# null means "not set": fine for optional attributes, not for required ones.
program "vllm" {
  command   = null
  directory = null
}

guard {
  upstream = null
  tls {
    cert = "/etc/glmctl/tls/cert.pem"
    key  = null
  }
}
