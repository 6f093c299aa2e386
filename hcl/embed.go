// Package hcl holds glmctl's example configs, embedded so that commands and
// tests can use them without knowing where the repository is.
package hcl

import _ "embed"

//go:embed demo.hcl
var demo []byte

//go:embed glm-4.7-flash.hcl
var glm47Flash []byte

// Demo returns hcl/demo.hcl: glmctl with its stand-in servers, on loopback,
// runnable anywhere as any user. The caller owns the returned slice.
func Demo() []byte { return append([]byte(nil), demo...) }

// GLM47Flash returns hcl/glm-4.7-flash.hcl: the real four-GPU vLLM box.
// The caller owns the returned slice.
func GLM47Flash() []byte { return append([]byte(nil), glm47Flash...) }
