# A guard must know where to send requests.
guard {
  listen = "127.0.0.1:8000"
}
