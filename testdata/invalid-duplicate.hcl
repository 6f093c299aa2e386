log {
  level = "info"
}

program "vllm" {
  command = ["vllm"]
  health {
    tcp = "127.0.0.1:8001"
  }
  health {
    tcp = "127.0.0.1:8002"
  }
}

guard {
  upstream = "http://127.0.0.1:8001"
}

program "vllm" {
  command = ["vllm", "again"]
}

log {
  level = "debug"
}

guard "main" {
  upstream = "http://127.0.0.1:8001"
}
