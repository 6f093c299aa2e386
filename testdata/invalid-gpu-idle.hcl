# GPU settings that act only on programs with gpus, and no program lists
# any: they would do nothing. (required still picks how a missing NVML is
# logged, so it stands alone.)
gpu {
  required        = false
  count           = 4
  min_free_memory = "70GiB"
  restart_on_xid  = true
}

program "vllm" {
  command = ["vllm", "serve", "zai-org/GLM-4.7-Flash"]
}
