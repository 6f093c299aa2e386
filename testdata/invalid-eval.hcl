program "vllm" {
  command = [glmctl_binary, "stub", "vllm"]
  env = {
    HOME = env("HOME")
    TOKEN = env("GLMCTL_TEST_UNSET")
  }
}
