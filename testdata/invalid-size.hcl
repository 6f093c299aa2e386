gpu {
  min_free_memory = "70 gigs"
}

guard {
  upstream = "http://127.0.0.1:8001"
  max_body = "-4MiB"
}

audit {
  rotate {
    max_size = "100MiB"
    keep     = 0
  }
}

program "vllm" {
  command = ["vllm"]
  log {
    max_size = "1.5"
  }
}
