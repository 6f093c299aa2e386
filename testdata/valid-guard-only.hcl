# No program: a guard in front of a model server run elsewhere on this box.
guard {
  upstream = "http://127.0.0.1:8001"
}
