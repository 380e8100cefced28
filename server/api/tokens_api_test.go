package api_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/mccgate/mcc/server/auth"
)

type tokensToken struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Scopes     []string `json:"scopes"`
	CreatedBy  string   `json:"createdBy"`
	ExpiresAt  string   `json:"expiresAt"`
	LastUsedAt string   `json:"lastUsedAt"`
	RevokedAt  string   `json:"revokedAt"`
}

func TestTokensAPILifecycle(t *testing.T) {
	e := startAPI(t, envOptions{scopes: adminAndRead})
	resp, data := e.do(t, "POST", "/v1/tokens", e.token[auth.ScopeAdmin], `{"name": "ci-android", "scopes": ["read", "issue"], "expiresIn": "720h"}`,
		"Content-Type", "application/json")
	var created struct {
		Token  tokensToken `json:"token"`
		Secret string      `json:"secret"`
	}
	wantAnswer(t, resp, data, http.StatusCreated, &created)
	if !strings.HasPrefix(created.Secret, "mcc_"+created.Token.ID+"_") || created.Token.CreatedBy != "token:admin" ||
		strings.Join(created.Token.Scopes, ",") != "issue,read" || created.Token.ExpiresAt == "" {
		t.Fatalf("created %s", data)
	}
	// The new token reads, but may not manage tokens.
	resp, data = e.do(t, "GET", "/v1/fusion-sets", created.Secret, "")
	wantAnswer(t, resp, data, http.StatusOK, nil)
	resp, data = e.do(t, "GET", "/v1/tokens", created.Secret, "")
	wantAnswer(t, resp, data, http.StatusForbidden, nil)

	var list struct {
		Items []tokensToken `json:"items"`
	}
	resp, data = e.do(t, "GET", "/v1/tokens", e.token[auth.ScopeAdmin], "")
	wantAnswer(t, resp, data, http.StatusOK, &list)
	if len(list.Items) != 3 || list.Items[2].Name != "ci-android" || list.Items[2].LastUsedAt == "" {
		t.Fatalf("list %s", data)
	}
	if strings.Contains(string(data), created.Secret[len(created.Secret)-43:]) {
		t.Fatal("the list shows a secret")
	}

	resp, data = e.do(t, "POST", "/v1/tokens", e.token[auth.ScopeAdmin], `{"name": "ci-android", "scopes": ["read"]}`, "Content-Type", "application/json")
	wantAnswer(t, resp, data, http.StatusConflict, nil)

	var revoked tokensToken
	resp, data = e.do(t, "DELETE", "/v1/tokens/"+created.Token.ID, e.token[auth.ScopeAdmin], "")
	wantAnswer(t, resp, data, http.StatusOK, &revoked)
	if revoked.RevokedAt == "" {
		t.Fatalf("revoked %s", data)
	}
	// A revoked token gets the same 401 as no token at all.
	resp, wrongBody := e.do(t, "GET", "/v1/fusion-sets", created.Secret, "")
	wantAnswer(t, resp, wrongBody, http.StatusUnauthorized, nil)
	_, noneBody := e.do(t, "GET", "/v1/fusion-sets", "mcc_0000000000000000_"+strings.Repeat("A", 43), "")
	if string(wrongBody) != string(noneBody) {
		t.Fatalf("401 bodies differ:\n%s\n%s", wrongBody, noneBody)
	}
	for _, id := range []string{"nobody", "0123456789abcdef", "a%00b", "%C3%28"} {
		resp, data = e.do(t, "DELETE", "/v1/tokens/"+id, e.token[auth.ScopeAdmin], "")
		wantAnswer(t, resp, data, http.StatusNotFound, nil)
	}
}

func TestTokensAPIBadInput(t *testing.T) {
	e := startAPI(t, envOptions{scopes: adminAndRead})
	cases := []struct {
		body   string
		status int
		field  string
	}{
		{`{"name": "x", "scopes": ["read"], "owner": "me"}`, 422, "owner"},
		{`{"name": "x", "scopes": "read"}`, 422, "scopes"},
		{`{"name": "x", "scopes": ["read,admin"]}`, 422, "scopes"},
		{`{"name": "x", "scopes": ["root"]}`, 422, "scopes"},
		{`{"name": "x", "scopes": []}`, 422, "scopes"},
		{`{"name": "X Y", "scopes": ["read"]}`, 422, "name"},
		{`{"name": "x", "scopes": ["read"], "expiresIn": "soon"}`, 422, "expiresIn"},
		{`{"name": "x", "scopes": ["read"], "expiresIn": "-5h"}`, 422, "expiresIn"},
		{`{"name": "x", "scopes": ["read"]} {}`, 400, ""},
		{`not json`, 400, ""},
	}
	for _, c := range cases {
		resp, data := e.do(t, "POST", "/v1/tokens", e.token[auth.ScopeAdmin], c.body, "Content-Type", "application/json")
		var p apiProblem
		wantAnswer(t, resp, data, c.status, &p)
		if c.field != "" && !p.hasField(c.field) {
			t.Errorf("%s: %s", c.body, data)
		}
	}
	if toks, _ := e.tokens.List(t.Context()); len(toks) != 2 {
		t.Fatalf("refused requests created tokens: %+v", toks)
	}
}

// Over its rate a token gets 429 with Retry-After in whole seconds.
func TestTokensAPIRateLimit(t *testing.T) {
	e := startAPI(t, envOptions{scopes: adminAndRead, limiter: auth.NewLimiter(0.01, 2)})
	for i := 0; i < 2; i++ {
		resp, data := e.do(t, "GET", "/v1/fusion-sets", e.token[auth.ScopeRead], "")
		wantAnswer(t, resp, data, http.StatusOK, nil)
	}
	resp, data := e.do(t, "GET", "/v1/fusion-sets", e.token[auth.ScopeRead], "")
	wantAnswer(t, resp, data, http.StatusTooManyRequests, nil)
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	// Another token has its own budget.
	resp, data = e.do(t, "GET", "/v1/fusion-sets", e.token[auth.ScopeAdmin], "")
	wantAnswer(t, resp, data, http.StatusOK, nil)
}
