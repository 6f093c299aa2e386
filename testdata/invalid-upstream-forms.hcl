# Each guard block is checked; only the first is kept.
guard {
  listen       = "8000"
  upstream     = "http://127.0.0.1:8001/v1"
  limits_store = "memcache://127.0.0.1:11211"
  trusted_proxies = ["10.0.0.0/8", "10.0.0.0/33", "proxy.local"]
  tls {
    cert = "/etc/glmctl/tls/cert.pem"
  }
}

metrics {
  listen = "127.0.0.1:99999"
}
