# Every block is optional: this file means "no programs, no guard, no
# metrics, no audit", only the control socket at its default place.
