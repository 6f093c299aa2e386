log {
  level  = "warning"
  format = "logfmt"
}

program "vllm" {
  command = ["vllm"]
  restart = "on_failure"
}

audit {
  on_error = "drop"
  fsync    = "sometimes"
  level    = "requests"
}
