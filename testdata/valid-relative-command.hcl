# A command that is not installed (yet) is a runtime problem, not a config
# error: the program goes to BACKOFF/FATAL with the reason in its status.
program "later" {
  command   = ["no-such-program-glmctl-test", "--flag"]
  directory = "relative/dir"
}
