# A remote upstream is allowed when the operator says the path is trusted.
guard {
  listen                = ":8443"
  upstream              = "https://gpu-box.internal:8000"
  allow_remote_upstream = true
  trusted_proxies       = ["10.0.0.0/8", "192.168.1.1", "::1/128"]
  tls {
    cert = "/etc/glmctl/tls/cert.pem"
    key  = "/etc/glmctl/tls/key.pem"
  }
}
