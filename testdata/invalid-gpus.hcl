gpu {
  count = 4
}

program "vllm" {
  command = ["vllm"]
  gpus    = [0, 1, 1, -2, 4]
}
