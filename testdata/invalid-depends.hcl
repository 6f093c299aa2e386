program "vllm" {
  command = ["vllm"]
}

program "ui" {
  command    = ["webui"]
  depends_on = ["vlm", "ui", "vllm", "vllm", "redis"]
}
