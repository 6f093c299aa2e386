listen = "127.0.0.1:8000"

program "vllm" {
  command = ["vllm"]
  backoff = {
    initial = "1s"
  }
  env {
    A = "b"
  }
}

program {
  command = ["nameless"]
}

program "all" {
  command = ["x"]
}

program "my prog" {
  command = ["y"]
}

gpu "0" {
}
