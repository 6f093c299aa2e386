// Command vllm-stub is a stand-in for vLLM's OpenAI-compatible server: the
// same routes, usage accounting, server-sent events and slow start, with
// deterministic replies and no GPU. See `vllm-stub --help`.
package main

import (
	"os"

	"github.com/glmctl/glmctl/internal/stub"
)

func main() {
	os.Exit(stub.RunApp("vllm-stub", stub.VLLMCommand(), os.Args))
}
