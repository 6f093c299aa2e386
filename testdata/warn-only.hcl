# Loads, with warnings (glmctl check prints them).
program "vllm" {
  command = ["vllm"]
}

program "ui" {
  command    = ["webui"]
  depends_on = ["vllm"]
  health {
    tcp      = "127.0.0.1:7860"
    interval = "5s"
    timeout  = "5s"
  }
}

guard {
  upstream = "http://127.0.0.1:8001"
  program  = "vllm"
}

metrics {
  listen = "0.0.0.0:9400"
}
