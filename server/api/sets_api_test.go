package api_test

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/server/auth"
)

// setsDoc is a fusion file of one set without trusted_ca: the server's CA
// for the set is meant.
func setsDoc(set, mode string) string {
	return fmt.Sprintf(`# published through the API
fusion_sets:
  - id: %s
    app_id: com.example.bank
    mode: %s
    threat_events: true
`, set, mode)
}

type setsFusionSet struct {
	ID        string `json:"id"`
	Version   int64  `json:"version"`
	SHA256    string `json:"sha256"`
	UpdatedBy string `json:"updatedBy"`
	UpdatedAt string `json:"updatedAt"`
	Document  string `json:"document"`
	CA        *struct {
		Fingerprint string `json:"fingerprint"`
		Subject     string `json:"subject"`
		NotAfter    string `json:"notAfter"`
	} `json:"ca"`
}

type setsVersion struct {
	Version  int64    `json:"version"`
	Actor    string   `json:"actor"`
	Comment  string   `json:"comment"`
	Changes  []string `json:"changes"`
	Document string   `json:"document"`
}

const yamlType = "application/yaml"

func TestSetsPublishLifecycle(t *testing.T) {
	e := startAPI(t, envOptions{scopes: adminAndRead})
	path := "/v1/fusion-sets/bank-prod"

	// The CA does not exist before the first publish.
	resp, data := e.do(t, "GET", path+"/ca.pem", "", "")
	wantAnswer(t, resp, data, http.StatusNotFound, nil)

	doc1 := setsDoc("bank-prod", "defense")
	resp, data = e.do(t, "PUT", path, e.token[auth.ScopeAdmin], doc1, "Content-Type", yamlType, "If-None-Match", "*")
	var created setsFusionSet
	wantAnswer(t, resp, data, http.StatusCreated, &created)
	if resp.Header.Get("ETag") != `"1"` || created.Version != 1 || created.ID != "bank-prod" || created.UpdatedBy != "token:admin" {
		t.Fatalf("first publish: ETag %s, %+v", resp.Header.Get("ETag"), created)
	}
	if created.CA == nil || created.CA.Subject != "CN=mcc bank-prod client CA" {
		t.Fatalf("first publish: CA %+v", created.CA)
	}

	// ca.pem is public and is the CA the response named.
	resp, data = e.do(t, "GET", path+"/ca.pem", "", "")
	wantAnswer(t, resp, data, http.StatusOK, nil)
	block, _ := pem.Decode(data)
	if block == nil || pki.Fingerprint(block.Bytes) != created.CA.Fingerprint {
		t.Fatalf("ca.pem is not the set's CA: %s", data)
	}

	// GET returns the document exactly as sent.
	resp, data = e.do(t, "GET", path, e.token[auth.ScopeRead], "")
	var got setsFusionSet
	wantAnswer(t, resp, data, http.StatusOK, &got)
	if got.Document != doc1 || resp.Header.Get("ETag") != `"1"` || got.CA == nil || got.CA.Fingerprint != created.CA.Fingerprint {
		t.Fatalf("GET: ETag %s, %+v", resp.Header.Get("ETag"), got)
	}
	resp, data = e.do(t, "GET", path, e.token[auth.ScopeRead], "", "If-None-Match", `"1"`)
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("GET with the current ETag: %d", resp.StatusCode)
	}

	doc2 := setsDoc("bank-prod", "detection")
	// A change of an existing set must say which version it changes.
	resp, data = e.do(t, "PUT", path, e.token[auth.ScopeAdmin], doc2, "Content-Type", yamlType)
	var p apiProblem
	wantAnswer(t, resp, data, http.StatusPreconditionRequired, &p)
	if p.Type != "urn:mcc:problem:precondition-required" {
		t.Fatalf("without If-Match: %+v", p)
	}
	resp, data = e.do(t, "PUT", path, e.token[auth.ScopeAdmin], doc2, "Content-Type", yamlType, "If-Match", `"7"`)
	wantAnswer(t, resp, data, http.StatusPreconditionFailed, &p)
	resp, data = e.do(t, "PUT", path, e.token[auth.ScopeAdmin], doc2, "Content-Type", yamlType, "If-None-Match", "*")
	wantAnswer(t, resp, data, http.StatusPreconditionFailed, nil)
	resp, data = e.do(t, "PUT", path, e.token[auth.ScopeAdmin], `{"document": `+jsonString(doc2)+`, "comment": "detection for the rollout"}`,
		"Content-Type", "application/json", "If-Match", `"1"`)
	var second setsFusionSet
	wantAnswer(t, resp, data, http.StatusOK, &second)
	if second.Version != 2 || resp.Header.Get("ETag") != `"2"` || second.CA.Fingerprint != created.CA.Fingerprint {
		t.Fatalf("second publish: %+v", second)
	}
	// The old ETag is stale now.
	resp, data = e.do(t, "PUT", path, e.token[auth.ScopeAdmin], doc1, "Content-Type", yamlType, "If-Match", `"1"`)
	wantAnswer(t, resp, data, http.StatusPreconditionFailed, nil)

	// History, newest first, with who changed what.
	resp, data = e.do(t, "GET", path+"/versions", e.token[auth.ScopeRead], "")
	var hist struct {
		Items      []setsVersion `json:"items"`
		NextCursor string        `json:"nextCursor"`
	}
	wantAnswer(t, resp, data, http.StatusOK, &hist)
	if len(hist.Items) != 2 || hist.NextCursor != "" {
		t.Fatalf("history: %s", data)
	}
	if v := hist.Items[0]; v.Version != 2 || v.Actor != "token:admin" || v.Comment != "detection for the rollout" ||
		strings.Join(v.Changes, ",") != "fusion_sets[0].mode" || v.Document != "" {
		t.Fatalf("version 2: %+v", v)
	}
	if v := hist.Items[1]; v.Version != 1 || strings.Join(v.Changes, ",") != "fusion_sets" {
		t.Fatalf("version 1: %+v", v)
	}
	resp, data = e.do(t, "GET", path+"/versions?limit=1", e.token[auth.ScopeRead], "")
	wantAnswer(t, resp, data, http.StatusOK, &hist)
	if len(hist.Items) != 1 || hist.NextCursor == "" {
		t.Fatalf("history page 1: %s", data)
	}
	next := hist.NextCursor
	hist.NextCursor = ""
	resp, data = e.do(t, "GET", path+"/versions?limit=1&cursor="+next, e.token[auth.ScopeRead], "")
	wantAnswer(t, resp, data, http.StatusOK, &hist)
	if len(hist.Items) != 1 || hist.Items[0].Version != 1 || hist.NextCursor != "" {
		t.Fatalf("history page 2: %s", data)
	}
	var v1 setsVersion
	resp, data = e.do(t, "GET", path+"/versions/1", e.token[auth.ScopeRead], "")
	wantAnswer(t, resp, data, http.StatusOK, &v1)
	if v1.Document != doc1 {
		t.Fatalf("version 1 document: %q", v1.Document)
	}
	for _, bad := range []string{"/versions/3", "/versions/0", "/versions/x", "/versions/-1"} {
		resp, data = e.do(t, "GET", path+bad, e.token[auth.ScopeRead], "")
		wantAnswer(t, resp, data, http.StatusNotFound, nil)
	}

	// Every change is in the audit log, with the token's name.
	entries, err := e.db.ReadAudit(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, en := range entries {
		actions = append(actions, en.Action+" "+en.Subject+" "+en.Actor)
	}
	want := "token.create token/admin cli:test|token.create token/read cli:test|" +
		"ca.create fusion-set/bank-prod token:admin|fusion-set.publish fusion-set/bank-prod token:admin|" +
		"fusion-set.publish fusion-set/bank-prod token:admin"
	if strings.Join(actions, "|") != want {
		t.Fatalf("audit:\n%s\nwant\n%s", strings.Join(actions, "\n"), strings.ReplaceAll(want, "|", "\n"))
	}
	if d := entries[4].Detail; d["version"] != float64(2) || fmt.Sprint(d["changes"]) != "[fusion_sets[0].mode]" {
		t.Fatalf("publish audit detail %v", d)
	}
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// A document's problems come back located like `mcc validate` reports
// them, and nothing is stored.
func TestSetsPublishProblems(t *testing.T) {
	e := startAPI(t, envOptions{scopes: adminAndRead})
	bad := setsDoc("bank-prod", "attack") + "    status: 99\n"
	resp, data := e.do(t, "PUT", "/v1/fusion-sets/bank-prod", e.token[auth.ScopeAdmin], bad, "Content-Type", yamlType)
	var p apiProblem
	wantAnswer(t, resp, data, http.StatusUnprocessableEntity, &p)
	// The same problems as the loader's, same fields and lines (the
	// missing trusted_ca is not one: the server's CA is meant).
	_, lerr := fusion.ParseInline([]byte(bad), "x")
	var le *fusion.LoadError
	if !errors.As(lerr, &le) {
		t.Fatal(lerr)
	}
	var want []string
	for _, lp := range le.Problems {
		if lp.Field != "fusion_sets[0].trusted_ca" {
			want = append(want, fmt.Sprintf("%s:%d:%s", lp.Field, lp.Line, lp.Msg))
		}
	}
	var gotProbs []string
	for _, fe := range p.Errors {
		gotProbs = append(gotProbs, fmt.Sprintf("%s:%d:%s", fe.Field, fe.Line, fe.Detail))
	}
	if len(want) < 2 || strings.Join(gotProbs, "\n") != strings.Join(want, "\n") {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(gotProbs, "\n"), strings.Join(want, "\n"))
	}

	cases := []struct {
		name, path, body, ctype string
		status                  int
		field                   string
	}{
		{"two sets", "bank-prod", setsDoc("bank-prod", "defense") + strings.TrimPrefix(setsDoc("bank-beta", "defense"), "# published through the API\nfusion_sets:\n"),
			yamlType, 422, "fusion_sets"},
		{"other set", "bank-prod", setsDoc("bank-beta", "defense"), yamlType, 422, "fusion_sets[0].id"},
		{"bad set id", "Bank_Prod", setsDoc("bank-prod", "defense"), yamlType, 422, "set"},
		{"syntax", "bank-prod", "fusion_sets: [\n  - id: x\n", yamlType, 422, "(document)"},
		{"not a mapping", "bank-prod", "- 1\n- 2\n", yamlType, 422, "(document)"},
		{"json unknown field", "bank-prod", `{"document": "x", "author": "me"}`, "application/json", 422, "author"},
		{"json no document", "bank-prod", `{"comment": "x"}`, "application/json", 422, "document"},
		{"json comment control", "bank-prod", `{"document": ` + jsonString(setsDoc("bank-prod", "defense")) + `, "comment": "a\u0000b"}`,
			"application/json", 422, "comment"},
		{"json malformed", "bank-prod", `{"document": `, "application/json", 400, ""},
		{"form", "bank-prod", setsDoc("bank-prod", "defense"), "application/x-www-form-urlencoded", 415, ""},
		{"no type", "bank-prod", setsDoc("bank-prod", "defense"), "", 415, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var hdr []string
			if c.ctype != "" {
				hdr = []string{"Content-Type", c.ctype}
			}
			resp, data := e.do(t, "PUT", "/v1/fusion-sets/"+c.path, e.token[auth.ScopeAdmin], c.body, hdr...)
			var p apiProblem
			wantAnswer(t, resp, data, c.status, &p)
			if c.field != "" && !p.hasField(c.field) {
				t.Fatalf("problem without field %s: %s", c.field, data)
			}
		})
	}
	resp, data = e.do(t, "GET", "/v1/fusion-sets/bank-prod", e.token[auth.ScopeRead], "")
	wantAnswer(t, resp, data, http.StatusNotFound, nil)
	resp, data = e.do(t, "GET", "/v1/fusion-sets/bank-prod/ca.pem", "", "")
	wantAnswer(t, resp, data, http.StatusNotFound, nil) // the refused publishes created no CA
}

// A document that names files is refused at the field and nothing is read:
// the server's KEK is the obvious target.
func TestSetsPublishRefusesFiles(t *testing.T) {
	e := startAPI(t, envOptions{scopes: adminAndRead})
	kek := e.dir + "/kek.key"
	docs := map[string]string{
		"fusion_sets[0].trusted_ca.file":     "    trusted_ca:\n      file: " + kek + "\n",
		"fusion_sets[0].revocation.files[0]": "    revocation:\n      files: [" + kek + "]\n",
		"fusion_sets[0].revocation.crls[0]":  "    revocation:\n      crls: [../../etc/passwd]\n",
		"store":                              "store: \"redis://:{file." + kek + "}@localhost:6379/0\"\n",
	}
	for field, extra := range docs {
		doc := setsDoc("bank-prod", "defense") + extra
		resp, data := e.do(t, "PUT", "/v1/fusion-sets/bank-prod", e.token[auth.ScopeAdmin], doc, "Content-Type", yamlType)
		var p apiProblem
		wantAnswer(t, resp, data, http.StatusUnprocessableEntity, &p)
		found := false
		for _, fe := range p.Errors {
			if strings.HasPrefix(fe.Field, strings.TrimSuffix(field, "[0]")) && fe.Line > 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: %s", field, data)
		}
	}
}

// trusted_ca may be given, but must include the server's CA for the set:
// otherwise the certificates the server issues would not verify.
func TestSetsPublishTrustedCA(t *testing.T) {
	e := startAPI(t, envOptions{scopes: adminAndRead})
	resp, data := e.do(t, "PUT", "/v1/fusion-sets/bank-prod", e.token[auth.ScopeAdmin], setsDoc("bank-prod", "defense"), "Content-Type", yamlType)
	wantAnswer(t, resp, data, http.StatusCreated, nil)
	_, caPEM := e.do(t, "GET", "/v1/fusion-sets/bank-prod/ca.pem", "", "")
	other, err := pki.NewCA(pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	withCA := func(pemText string) string {
		return setsDoc("bank-prod", "defense") + "    trusted_ca:\n      pem: |\n        " +
			strings.ReplaceAll(strings.TrimSpace(pemText), "\n", "\n        ") + "\n"
	}
	resp, data = e.do(t, "PUT", "/v1/fusion-sets/bank-prod", e.token[auth.ScopeAdmin], withCA(string(other.CertPEM())), "Content-Type", yamlType, "If-Match", `"1"`)
	var p apiProblem
	wantAnswer(t, resp, data, http.StatusUnprocessableEntity, &p)
	if !p.hasField("fusion_sets[0].trusted_ca") {
		t.Fatalf("another CA as trusted_ca: %s", data)
	}
	resp, data = e.do(t, "PUT", "/v1/fusion-sets/bank-prod", e.token[auth.ScopeAdmin], withCA(string(caPEM)+string(other.CertPEM())), "Content-Type", yamlType, "If-Match", `"1"`)
	wantAnswer(t, resp, data, http.StatusOK, nil)
}

func TestSetsValidate(t *testing.T) {
	e := startAPI(t, envOptions{scopes: adminAndRead})
	resp, data := e.do(t, "POST", "/v1/validate", e.token[auth.ScopeRead], setsDoc("bank-prod", "defense"), "Content-Type", yamlType)
	var res struct {
		Valid    bool `json:"valid"`
		Problems []struct {
			Field, Detail string
			Line          int
		} `json:"problems"`
	}
	wantAnswer(t, resp, data, http.StatusOK, &res)
	if !res.Valid || len(res.Problems) != 0 || !strings.Contains(string(data), `"problems":[]`) {
		t.Fatalf("a valid document: %s", data)
	}
	// Validating never creates a CA or an audit entry.
	resp, data = e.do(t, "GET", "/v1/fusion-sets/bank-prod/ca.pem", "", "")
	wantAnswer(t, resp, data, http.StatusNotFound, nil)
	if n, _, _ := e.db.VerifyAudit(context.Background()); n != 2 {
		t.Fatalf("validate wrote the audit log (%d entries)", n)
	}
	resp, data = e.do(t, "POST", "/v1/validate", e.token[auth.ScopeRead], `{"document": `+jsonString(setsDoc("bank-prod", "attack"))+`}`, "Content-Type", "application/json")
	wantAnswer(t, resp, data, http.StatusOK, &res)
	if res.Valid || len(res.Problems) == 0 || res.Problems[0].Field != "fusion_sets[0].mode" || res.Problems[0].Line != 5 {
		t.Fatalf("an invalid document: %s", data)
	}
	resp, data = e.do(t, "POST", "/v1/validate", "", setsDoc("bank-prod", "defense"), "Content-Type", yamlType)
	wantAnswer(t, resp, data, http.StatusUnauthorized, nil)
}

func TestSetsListAndScopes(t *testing.T) {
	e := startAPI(t, envOptions{scopes: adminAndRead})
	for _, set := range []string{"bank-c", "bank-a", "bank-b"} {
		resp, data := e.do(t, "PUT", "/v1/fusion-sets/"+set, e.token[auth.ScopeAdmin], setsDoc(set, "defense"), "Content-Type", yamlType)
		wantAnswer(t, resp, data, http.StatusCreated, nil)
	}
	var pg struct {
		Items      []setsFusionSet `json:"items"`
		NextCursor string          `json:"nextCursor"`
	}
	resp, data := e.do(t, "GET", "/v1/fusion-sets?limit=2", e.token[auth.ScopeRead], "")
	wantAnswer(t, resp, data, http.StatusOK, &pg)
	if len(pg.Items) != 2 || pg.Items[0].ID != "bank-a" || pg.Items[1].ID != "bank-b" || pg.NextCursor == "" || pg.Items[0].CA == nil || pg.Items[0].Document != "" {
		t.Fatalf("page 1: %s", data)
	}
	next := pg.NextCursor
	pg.NextCursor = ""
	resp, data = e.do(t, "GET", "/v1/fusion-sets?limit=2&cursor="+next, e.token[auth.ScopeRead], "")
	wantAnswer(t, resp, data, http.StatusOK, &pg)
	if len(pg.Items) != 1 || pg.Items[0].ID != "bank-c" || pg.NextCursor != "" {
		t.Fatalf("page 2: %s", data)
	}
	for _, q := range []string{"?cursor=!!!", "?cursor=eyJhIjoiWCJ9", "?limit=0", "?limit=501", "?fusionset=x"} {
		resp, data = e.do(t, "GET", "/v1/fusion-sets"+q, e.token[auth.ScopeRead], "")
		if resp.StatusCode != 400 && resp.StatusCode != 422 {
			t.Errorf("GET /v1/fusion-sets%s: %d %s", q, resp.StatusCode, data)
		}
	}
	// Scopes: reading needs read, publishing admin.
	resp, data = e.do(t, "PUT", "/v1/fusion-sets/bank-a", e.token[auth.ScopeRead], setsDoc("bank-a", "defense"), "Content-Type", yamlType, "If-Match", `"1"`)
	var p apiProblem
	wantAnswer(t, resp, data, http.StatusForbidden, &p)
	if p.Scope != "admin" {
		t.Fatalf("403 names scope %q", p.Scope)
	}
	resp, data = e.do(t, "GET", "/v1/fusion-sets", "", "")
	wantAnswer(t, resp, data, http.StatusUnauthorized, nil)
	if resp.Header.Get("WWW-Authenticate") != `Bearer realm="mcc"` {
		t.Fatalf("401 without WWW-Authenticate")
	}
	// Path values no set can have are not found, never a server error.
	for _, p := range []string{"/v1/fusion-sets/a%00b", "/v1/fusion-sets/%C3%28", "/v1/fusion-sets/" + strings.Repeat("a", 70),
		"/v1/fusion-sets/a%00b/ca.pem", "/v1/fusion-sets/a%00b/versions", "/v1/fusion-sets/bank-a/versions/99999999999999999999"} {
		resp, data = e.do(t, "GET", p, e.token[auth.ScopeRead], "")
		wantAnswer(t, resp, data, http.StatusNotFound, nil)
	}
}
