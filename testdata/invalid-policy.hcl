guard {
  upstream = "unix:///run/glmctl/vllm.sock"
}

policy {
  max_prompt_tokens = 0
  max_tokens        = "2000"
  deny_params       = ["logprobs", "messages", "logprobs", "n>1"]
  max_token         = 10
  rule "no-credentials" {
    pattern = "(?i)BEGIN (RSA|OPENSSH PRIVATE KEY"
    action  = "reject"
  }
  rule "watchlist" {
    literal = ["违禁词", " ", "\u200b"]
    action  = "block"
  }
}
