# The guard and the metrics listener cannot share a port.
metrics {
  listen = "127.0.0.1:8000"
}

guard {
  listen   = "0.0.0.0:8000"
  upstream = "unix:///run/glmctl/vllm.sock"
}
