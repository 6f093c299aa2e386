program "vllm" {
  command     = ["vllm"]
  stop_signal = "SIGSTOP"
}

program "ui" {
  command     = ["webui"]
  stop_signal = "term" # fine: means SIGTERM
}

program "worker" {
  command     = ["worker"]
  stop_signal = 15
}
