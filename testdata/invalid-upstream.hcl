guard {
  listen   = "0.0.0.0:8000"
  upstream = "http://10.0.0.5:8001"
}
