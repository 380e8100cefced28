package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Page sizes.
const (
	defaultLimit = 50
	maxLimit     = 500
)

// page is a list response.
type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"nextCursor,omitempty"`
}

// encodeCursor makes an opaque cursor of a keyset position.
func encodeCursor(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor reads a cursor made by encodeCursor into dst; "" leaves dst
// alone. A cursor that does not decode is a 400 invalid-cursor.
func decodeCursor(s string, dst any) error {
	if s == "" {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = decodeJSONBytes(b, dst)
	}
	if err != nil {
		return &Problem{Name: "invalid-cursor", Status: http.StatusBadRequest, Detail: "cursor is not one this server issued"}
	}
	return nil
}

// queryLimit reads ?limit= (1..maxLimit, default defaultLimit).
func queryLimit(q url.Values) (int, error) {
	s := q.Get("limit")
	if s == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxLimit {
		return 0, invalidField("limit", "must be a whole number from 1 to 500")
	}
	return n, nil
}

// queryTime reads an RFC 3339 time parameter (zero when absent).
func queryTime(q url.Values, name string) (time.Time, error) {
	s := q.Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, invalidField(name, "must be an RFC 3339 time, e.g. 2026-12-05T10:00:00Z")
	}
	return t.UTC(), nil
}

// knownParams refuses query parameters a route does not take (a typo such
// as ?fusionset= would otherwise silently list everything).
func knownParams(q url.Values, names ...string) error {
	for k := range q {
		ok := false
		for _, n := range names {
			if k == n {
				ok = true
				break
			}
		}
		if !ok {
			return invalidField(k, "unknown query parameter")
		}
		// Every value may reach a query, and PostgreSQL refuses NUL and
		// invalid UTF-8: name the parameter rather than fail in the database.
		for _, v := range q[k] {
			if detail := plainText(v); detail != "" {
				return invalidField(k, detail)
			}
		}
	}
	return nil
}
