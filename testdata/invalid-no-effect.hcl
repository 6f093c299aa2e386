# Settings that would do nothing: a console with no guard to sign in
# through (its admin keys are the guard's), and log rotation settings for a
# program whose output goes to no file.
console {
  listen = "127.0.0.1:9402"
}

program "ui" {
  command = ["python3", "/srv/webui/app.py"]
  log {
    max_size = "10MiB"
    keep     = 3
  }
}
