# A control socket path too long for a unix socket, and an upstream with a
# query string (the guard forwards each request's own query).
control {
  socket = "/run/glmctl/a-directory-name-that-goes-on/and-on-and-on/far-beyond-what-a-unix-socket-address-holds/glmctl.sock"
}

guard {
  upstream = "http://127.0.0.1:8001/?x=1"
}
