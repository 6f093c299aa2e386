guard {
  upstream = "unix:///run/glmctl/vllm.sock"
}

policy {
  rule "watchlist" {
    literal = ["x"]
    action  = "flag"
  }
  rule "watchlist" {
    literal = ["y"]
    action  = "flag"
  }
  rule "max_tokens" {
    literal = ["z"]
    action  = "flag"
  }
  rule "everything" {
    pattern = "a*"
    action  = "flag"
  }
  rule "nothing" {
    action = "reject"
  }
  rule "no action" {
    literal = "secret"
    colour  = "red"
  }
  rule {
    literal = ["w"]
  }
}
