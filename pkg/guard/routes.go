package guard

import (
	"net/http"
	"path"
	"strings"
)

// access says who may call a route.
type access int

const (
	accessNone   access = iota // 404: not served here (deny by default)
	accessUser                 // any valid key
	accessAdmin                // admin keys only (vLLM utility routes)
	accessDenied               // vLLM control routes: 403 for everyone
)

// bodyKind says what a route takes as its request body.
type bodyKind int

const (
	bodyNone bodyKind = iota // no body: one sent is refused (400), never forwarded
	bodyJSON                 // a JSON object of at most max_body bytes, inspected
)

// reserveKind says how a route reserves tokens before it is forwarded.
type reserveKind int

const (
	reserveNothing    reserveKind = iota // no tokens
	reservePrompt                        // the prompt estimate only (embeddings)
	reserveChat                          // prompt + (max_completion_tokens or max_tokens) × choices
	reserveCompletion                    // prompt + max_tokens × choices (no max_completion_tokens)
)

// responseKind says how the upstream's answer is read on its way back.
type responseKind int

const (
	respPass   responseKind = iota // passed through, only its end noted
	respUsage                      // JSON usage object, or the stream's usage chunk
	respModels                     // a model list: its ids become known model labels
)

// route is one entry of the route table: everything the guard knows about a
// path. Adding a route is adding one entry to routeTable.
type route struct {
	path     string
	method   string // the only method allowed
	access   access
	body     bodyKind
	reserve  reserveKind
	response responseKind
	// streams: a request may ask for stream = true (SSE answer, usage chunk
	// asked for on the client's behalf).
	streams bool
	// label is the metrics route label.
	label string
}

// routeTable lists every path the guard serves or refuses by name. Anything
// else is unknown (404). Paths are matched exactly, after cleanPath.
var routeTable = func() map[string]*route {
	t := map[string]*route{}
	add := func(r route) {
		if r.label == "" {
			r.label = r.path
		}
		t[r.path] = &r
	}
	add(route{path: "/v1/chat/completions", method: http.MethodPost, access: accessUser, body: bodyJSON, reserve: reserveChat, response: respUsage, streams: true})
	add(route{path: "/v1/completions", method: http.MethodPost, access: accessUser, body: bodyJSON, reserve: reserveCompletion, response: respUsage, streams: true})
	add(route{path: "/v1/embeddings", method: http.MethodPost, access: accessUser, body: bodyJSON, reserve: reservePrompt, response: respUsage})
	add(route{path: "/v1/models", method: http.MethodGet, access: accessUser, body: bodyNone, response: respModels})
	add(route{path: "/tokenize", method: http.MethodPost, access: accessAdmin, body: bodyJSON})
	add(route{path: "/detokenize", method: http.MethodPost, access: accessAdmin, body: bodyJSON})
	add(route{path: "/version", method: http.MethodGet, access: accessAdmin, body: bodyNone})
	add(route{path: "/is_sleeping", method: http.MethodGet, access: accessAdmin, body: bodyNone})
	for _, p := range []string{"/pause", "/resume", "/sleep", "/wake_up", "/collective_rpc", "/update_weights",
		"/load", "/reset_prefix_cache", "/reset_mm_cache", "/invocations", "/scale_elastic_ep",
		"/start_profile", "/stop_profile", "/server_info", "/metrics", "/ping",
		"/v1/load_lora_adapter", "/v1/unload_lora_adapter"} {
		add(route{path: p, access: accessDenied})
	}
	return t
}()

// unknownRoute is what an unlisted path maps to.
var unknownRoute = &route{access: accessNone, label: labelOther}

// lookupRoute maps a routed path (already checked by cleanPath) to its
// route. Deny by default: anything not listed is unknown.
func lookupRoute(p string) *route {
	if r, ok := routeTable[p]; ok {
		return r
	}
	return unknownRoute
}

// inferenceLabels are the route labels whose histograms exist from start-up.
func inferenceLabels() []string {
	var out []string
	for _, r := range routeTable {
		if r.access == accessUser {
			out = append(out, r.label)
		}
	}
	return out
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
