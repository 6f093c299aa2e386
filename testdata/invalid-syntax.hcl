# One attribute per line: HCL has no "a = 1  b = 2" on one line.
log { level = "info"  format = "json" }
