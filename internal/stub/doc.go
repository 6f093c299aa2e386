// Package stub holds stand-in servers for demos, tests and benchmarks: VLLM
// behaves like vLLM's OpenAI-compatible server where glmctl cares (routes,
// usage accounting, server-sent events, stream_options.include_usage,
// /health, a slow start during which nothing listens, crashes), and WebUI is
// a tiny chat page that calls an OpenAI-compatible API with a key the
// browser never sees.
//
// Both are driven by options structs (NewVLLM, NewWebUI) and run with
// Run(ctx); Handler exposes the routes for in-process tests. VLLMCommand and
// WebUICommand build the command lines shared by cmd/vllm-stub,
// cmd/webui-stub and the hidden `glmctl stub vllm|webui`.
package stub
