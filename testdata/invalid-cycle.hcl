program "a" {
  command    = ["a"]
  depends_on = ["c"]
}

program "b" {
  command    = ["b"]
  depends_on = ["a"]
}

program "c" {
  command    = ["c"]
  depends_on = ["b"]
}

program "d" {
  command    = ["d"]
  depends_on = ["a", "e"]
}

program "e" {
  command    = ["e"]
  depends_on = ["d"]
}
