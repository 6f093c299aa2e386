# Several unrelated mistakes: every one is reported at once, in file order.
log {
  level = "verbose"
}

metrics {
  listen = "localhost"
}

program "vllm" {
  command    = ["vllm"]
  start_secs = "90"
  gpus       = [0, 0]
  depends_on = ["db"]
  health {
  }
}

guard {
  upstream = "http://192.168.1.10:8001"
  program  = "vllm"
  max_body = "lots"
}

audit {
  fsync = "sometimes"
  colour = "blue"
}
