// Command webui-stub is a stand-in chat web UI: a self-contained page whose
// messages it relays to an OpenAI-compatible API with a key the browser never
// sees. See `webui-stub --help`.
package main

import (
	"os"

	"github.com/glmctl/glmctl/internal/stub"
)

func main() {
	os.Exit(stub.RunApp("webui-stub", stub.WebUICommand(), os.Args))
}
