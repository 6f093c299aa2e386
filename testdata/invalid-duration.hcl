# start_secs needs a unit, like every duration.
log {
  level = "info"
}

program "vllm" {
  command = ["python3", "-m", "vllm.entrypoints.openai.api_server"]

  restart = "always"

  # supervisord's startsecs=90 carried over without a unit:
  start_secs    = "90"
  start_timeout = "half an hour"
  stop_timeout  = 30
  backoff {
    initial = "-1s"
    max     = "0s"
  }
}
