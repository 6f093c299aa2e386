# A command that is not installed (yet) still parses: the file itself is
# valid. glmctl check, up and reload then refuse it at its line:col (what a
# start would fail on, daemon.Preflight), rather than let it go FATAL.
program "later" {
  command   = ["no-such-program-glmctl-test", "--flag"]
  directory = "/srv/later"
}
