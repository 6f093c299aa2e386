gpu {
  required = "yes"
  count    = "4"
}

program "vllm" {
  command       = "python3 -m vllm.entrypoints.openai.api_server"
  user          = 1000
  gpus          = ["0", 1]
  start_retries = 2.5
  env = {
    VLLM_ENGINE_READY_TIMEOUT_S = 1800
    LIST                        = ["a"]
  }
  autostart  = "true"
  depends_on = "ui"
}

program "ui" {
  command = []
}
