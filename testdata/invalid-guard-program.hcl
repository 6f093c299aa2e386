program "vllm" {
  command = ["vllm"]
}

guard {
  upstream = "unix:///run/glmctl/vllm.sock"
  program  = "vlm"
}
