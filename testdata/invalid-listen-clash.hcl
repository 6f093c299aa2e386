# glmctl's listeners cannot share a port: a wildcard covers every address, and
# "localhost" is 127.0.0.1 when Go binds it.
metrics {
  listen = "127.0.0.1:8000"
}

console {
  listen = "localhost:8000"
}

guard {
  listen   = "0.0.0.0:8000"
  upstream = "unix:///run/glmctl/vllm.sock"
}

program "other" {
  command = ["sleep", "infinity"]
}
