package guard

import (
	"net/http"
	"path"
	"strings"
)

// routeKind says what the guard does with a path.
type routeKind int

const (
	routeUnknown   routeKind = iota // 404: not served here
	routeInference                  // OpenAI inference route: tokens reserved and settled
	routeRead                       // OpenAI read-only route (models)
	routeAdmin                      // vLLM utility route: proxied for admin keys only
	routeDenied                     // vLLM control route: refused for everyone
)

// route is how the guard treats one path.
type route struct {
	kind   routeKind
	method string // the only method allowed
	// tokens: whether the request reserves completion tokens (max_tokens).
	completion bool
}

// classify maps a routed path (already checked by cleanPath) to its route.
// Deny by default: anything not listed is unknown.
func classify(p string) route {
	switch p {
	case "/v1/chat/completions", "/v1/completions":
		return route{kind: routeInference, method: http.MethodPost, completion: true}
	case "/v1/embeddings":
		return route{kind: routeInference, method: http.MethodPost}
	case "/v1/models":
		return route{kind: routeRead, method: http.MethodGet}
	case "/tokenize", "/detokenize":
		return route{kind: routeAdmin, method: http.MethodPost}
	case "/version", "/is_sleeping":
		return route{kind: routeAdmin, method: http.MethodGet}
	case "/pause", "/resume", "/sleep", "/wake_up", "/collective_rpc", "/update_weights",
		"/load", "/reset_prefix_cache", "/reset_mm_cache", "/invocations", "/scale_elastic_ep",
		"/start_profile", "/stop_profile", "/server_info", "/metrics", "/ping",
		"/v1/load_lora_adapter", "/v1/unload_lora_adapter":
		return route{kind: routeDenied}
	}
	return route{kind: routeUnknown}
}

// cleanPath returns the path the guard decides on and forwards: the decoded
// request path, refused (ok false) rather than normalised when it holds dot
// segments, empty segments, backslashes or encoded slashes, so that no
// spelling reaches a route other than the one the guard checked.
func cleanPath(rawPath, decoded string) (string, bool) {
	if decoded == "" || decoded[0] != '/' {
		return "", false
	}
	if rawPath != "" {
		l := strings.ToLower(rawPath)
		if strings.Contains(l, "%2f") || strings.Contains(l, "%5c") || strings.Contains(l, "%2e") {
			return "", false
		}
	}
	if strings.ContainsAny(decoded, "\\\x00") || path.Clean(decoded) != decoded {
		return "", false
	}
	return decoded, true
}
