package guard

import (
	"encoding/json"
	"net/http"
)

// OpenAI error types and codes the guard answers with.
const (
	typeInvalidRequest = "invalid_request_error"
	typeServer         = "server_error"
	typePermission     = "permission_error"

	codeInvalidKey      = "invalid_api_key"
	codeRateLimit       = "rate_limit_exceeded"
	codeTooLarge        = "request_too_large"
	codeBodyTooLarge    = "body_too_large"
	codePolicy          = "policy_violation"
	codeBodyTimeout     = "body_timeout"
	codeBodyNotAllowed  = "body_not_allowed"
	codeModelDenied     = "model_not_allowed"
	codeRouteDenied     = "route_not_allowed"
	codeNotFound        = "not_found"
	codeBadJSON         = "invalid_json"
	codeBadPath         = "invalid_path"
	codeMethod          = "method_not_allowed"
	codeNotReady        = "model_not_ready"
	codeUpstream        = "upstream_unavailable"
	codeUpstreamTimeout = "upstream_timeout"
	codeAuditDown       = "audit_unavailable"
	codeLimitsDown      = "limits_unavailable"
	codeGuardInternal   = "internal_error"
)

type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

// writeError answers with OpenAI's error body.
func writeError(w http.ResponseWriter, status int, typ, code, msg string) {
	body, _ := json.Marshal(struct {
		Error apiError `json:"error"`
	}{apiError{Message: msg, Type: typ, Code: code}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
