package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mccgate/mcc/server/api"
	"github.com/mccgate/mcc/server/auth"
)

// FuzzRequestDecode sends arbitrary bodies, content types, query strings
// and headers to every POST and PUT route of the real API (admin token, a
// published fusion set). No input may answer 5xx, and every 4xx must be a
// problem that matches openapi.json (apiEnv.send checks both).
//
//	go test ./server/api -run '^$' -fuzz FuzzRequestDecode -fuzztime 30s
func FuzzRequestDecode(f *testing.F) {
	var writes []api.Route
	for _, r := range api.Routes() {
		if r.Method == "POST" || r.Method == "PUT" {
			writes = append(writes, r)
		}
	}
	seeds := []string{
		``, `{}`, `[]`, `null`, `{"name":"fz","scopes":["read"]}`, `{"appId":"com.example.walk","buildId":"f-1"}`,
		`{"serial":"ab"}`, `{"serials":["ab",1]}`, `{"build":{"fusionSet":"walk-prod","appId":"a","buildId":"b"}}`,
		`{"record":{}}`, `{"events":[{}]}`, `{"document":"fusion_sets: []"}`, contractSetDoc, `{"a":` + strings.Repeat("[", 5000),
		"\xff\xfe", `{"name":"\u0000"}`, `{"validFor":"9999999999h"}`, `{"appId":"a","buildId":"b","buildDate":"0000-00-00"}`,
	}
	for i := range writes {
		for _, s := range seeds {
			f.Add(uint8(i), []byte(s), "application/json", "", "")
		}
		f.Add(uint8(i), []byte(contractSetDoc), "application/yaml", "x=1", `"1"`)
	}
	e := startAPI(f, envOptions{})
	admin := e.token[auth.ScopeAdmin]
	e.send(f, contractReq{method: "PUT", path: "/v1/fusion-sets/walk-prod", token: admin, ctype: "application/yaml", body: contractSetDoc, want: 201})

	f.Fuzz(func(t *testing.T, route uint8, body []byte, ctype, query, header string) {
		r := writes[int(route)%len(writes)]
		path := strings.ReplaceAll(r.Pattern, "{set}", "walk-prod")
		if query != "" {
			path += "?" + query
		}
		q := contractReq{method: r.Method, path: path, token: admin, ctype: ctype, body: string(body), lenient: true,
			header: map[string]string{"Idempotency-Key": header, "If-Match": header}}
		if ctype == "" {
			q.ctype = "application/json"
		}
		req, err := http.NewRequest(q.method, "http://x"+q.path, nil)
		if err != nil || req.URL.Path != strings.SplitN(q.path, "?", 2)[0] || !uriQuery(query) {
			return // not a request a client could send to this route
		}
		for _, v := range []string{ctype, header} {
			if strings.ContainsFunc(v, func(c rune) bool { return (c < 0x20 && c != '\t') || c == 0x7f }) {
				return // net/http refuses to send such a header value
			}
		}
		e.send(t, q)
	})
}

// uriQuery reports whether q can travel as a request line's query as it
// is: no fragment (it never leaves the client), no space, control or
// non-ASCII byte (net/http's server answers those itself, before any
// handler, with a plain-text 400).
func uriQuery(q string) bool {
	return !strings.ContainsFunc(q, func(c rune) bool { return c <= ' ' || c >= 0x7f || c == '#' })
}
