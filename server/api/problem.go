package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/server/store"
)

// problemBase prefixes every problem type: a stable URN per error, listed
// in docs/api.md, never a URL that could move.
const problemBase = "urn:mcc:problem:"

// Problem is an RFC 9457 problem. Name becomes the type
// (urn:mcc:problem:<name>).
type Problem struct {
	Name   string
	Status int
	Detail string
	// Errors locate what was wrong in the request: a JSON path
	// ("events[3].reasonCode"), a query parameter, or a fusion file field.
	Errors []FieldError
	// Extra members of the problem object (e.g. "scope").
	Extra map[string]any

	retryAfter      string
	wwwAuthenticate string
}

// FieldError is one located problem of a request.
type FieldError struct {
	Field  string `json:"field"`
	Line   int    `json:"line,omitempty"` // fusion file documents
	Detail string `json:"detail"`
}

func (p *Problem) Error() string { return p.Name + ": " + p.Detail }

var titles = map[string]string{
	"malformed-body":         "Malformed request body",
	"invalid-request":        "Invalid request",
	"invalid-cursor":         "Invalid cursor",
	"unauthorized":           "Unauthorized",
	"forbidden":              "Forbidden",
	"not-found":              "Not found",
	"method-not-allowed":     "Method not allowed",
	"conflict":               "Conflict",
	"precondition-failed":    "Precondition failed",
	"body-too-large":         "Request body too large",
	"unsupported-media-type": "Unsupported media type",
	"idempotency-key-reused": "Idempotency key reused",
	"precondition-required":  "Precondition required",
	"rate-limited":           "Too many requests",
	"internal":               "Internal error",
	"unavailable":            "Service unavailable",
}

// ProblemNames lists every problem type name (docs and the OpenAPI test
// check them).
func ProblemNames() []string {
	out := make([]string, 0, len(titles))
	for n := range titles {
		out = append(out, n)
	}
	return out
}

func notFound(detail string) *Problem {
	return &Problem{Name: "not-found", Status: http.StatusNotFound, Detail: detail}
}

// invalid is a 422 with located errors.
func invalid(detail string, errs ...FieldError) *Problem {
	return &Problem{Name: "invalid-request", Status: http.StatusUnprocessableEntity, Detail: detail, Errors: errs}
}

// invalidField is a 422 about one field or parameter.
func invalidField(field, detail string) *Problem {
	return invalid(field+": "+detail, FieldError{Field: field, Detail: detail})
}

// writeProblem answers err as a problem. Errors that are not problems are
// internal: logged with the request id, answered without details.
func writeProblem(w http.ResponseWriter, r *http.Request, log *zap.Logger, err error) {
	var p *Problem
	if !errors.As(err, &p) {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			p = &Problem{Name: "body-too-large", Status: http.StatusRequestEntityTooLarge, Detail: "the request body is over the limit"}
		case store.IsInvalidText(err):
			p = invalid("a value holds a NUL byte or invalid UTF-8, which the database cannot store")
		default:
			log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path),
				zap.String("request_id", w.Header().Get("X-Request-Id")), zap.Error(err))
			p = &Problem{Name: "internal", Status: http.StatusInternalServerError, Detail: "internal error (request " + w.Header().Get("X-Request-Id") + ")"}
		}
	}
	body := map[string]any{}
	for k, v := range p.Extra {
		body[k] = v
	}
	body["type"] = problemBase + p.Name
	body["title"] = titles[p.Name]
	body["status"] = p.Status
	if p.Detail != "" {
		body["detail"] = p.Detail
	}
	if len(p.Errors) > 0 {
		body["errors"] = p.Errors
	}
	body["instance"] = r.URL.Path
	if p.retryAfter != "" {
		w.Header().Set("Retry-After", p.retryAfter)
	}
	if p.wwwAuthenticate != "" {
		w.Header().Set("WWW-Authenticate", p.wwwAuthenticate)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(body)
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}
