program "none" {
  command = ["a"]
  health {
    interval = "10s"
  }
}

program "several" {
  command = ["b"]
  health {
    http = "http://127.0.0.1:8001/health"
    tcp  = "127.0.0.1:8001"
  }
}

program "values" {
  command = ["c"]
  health {
    tcp      = "8001"
    interval = "0s"
    timeout  = "-5s"
    failures = 0
  }
}

program "socket" {
  command = ["d"]
  health {
    exec        = ["/bin/true"]
    unix_socket = "/run/d.sock"
  }
}

program "url" {
  command = ["e"]
  health {
    http = "localhost/health"
  }
}
