gaurd {
  upstream = "unix:///run/glmctl/vllm.sock"
}

program "vllm" {
  command = ["vllm", "serve"]
  heath {
    http = "http://localhost/health"
  }
}

supervisor {
}
