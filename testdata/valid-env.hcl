# glmctl_bin is the running glmctl; env() reads the environment.
program "stub" {
  command = [glmctl_bin, "stub", "vllm", "--listen", "127.0.0.1:${env("STUB_PORT", "8001")}"]
  env = {
    HOME  = env("HOME")
    DEBUG = env("GLMCTL_TEST_UNSET", "0")
    SEQS  = 50
  }
}
