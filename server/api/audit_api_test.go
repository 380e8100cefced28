package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/mccgate/mcc/server/auth"
)

type auditPage struct {
	Items []struct {
		Seq     int64          `json:"seq"`
		Time    string         `json:"time"`
		Actor   string         `json:"actor"`
		Action  string         `json:"action"`
		Subject string         `json:"subject"`
		Detail  map[string]any `json:"detail"`
		Prev    string         `json:"prev"`
		Hash    string         `json:"hash"`
	} `json:"items"`
	NextCursor string `json:"nextCursor"`
}

func TestAuditAPI(t *testing.T) {
	e := startAPI(t, envOptions{scopes: adminAndRead}) // two token.create entries
	resp, data := e.do(t, "PUT", "/v1/fusion-sets/bank-prod", e.token[auth.ScopeAdmin], setsDoc("bank-prod", "defense"), "Content-Type", yamlType)
	wantAnswer(t, resp, data, http.StatusCreated, nil) // ca.create, fusion-set.publish

	var all auditPage
	resp, data = e.do(t, "GET", "/v1/audit", e.token[auth.ScopeRead], "")
	wantAnswer(t, resp, data, http.StatusOK, &all)
	if len(all.Items) != 4 || all.NextCursor != "" {
		t.Fatalf("audit: %s", data)
	}
	for i, it := range all.Items {
		if it.Seq != int64(i+1) || (i > 0 && it.Prev != all.Items[i-1].Hash) || it.Time == "" {
			t.Fatalf("entry %d does not chain: %+v", i, it)
		}
	}
	if all.Items[3].Action != "fusion-set.publish" || all.Items[3].Actor != "token:admin" {
		t.Fatalf("last entry %+v", all.Items[3])
	}
	// Pages by cursor, and by ?after=.
	var pg auditPage
	resp, data = e.do(t, "GET", "/v1/audit?limit=3", e.token[auth.ScopeRead], "")
	wantAnswer(t, resp, data, http.StatusOK, &pg)
	if len(pg.Items) != 3 || pg.NextCursor == "" {
		t.Fatalf("page 1: %s", data)
	}
	next := pg.NextCursor
	pg = auditPage{}
	resp, data = e.do(t, "GET", "/v1/audit?limit=3&cursor="+next, e.token[auth.ScopeRead], "")
	wantAnswer(t, resp, data, http.StatusOK, &pg)
	if len(pg.Items) != 1 || pg.Items[0].Seq != 4 || pg.NextCursor != "" {
		t.Fatalf("page 2: %s", data)
	}
	pg = auditPage{}
	resp, data = e.do(t, "GET", "/v1/audit?after=2", e.token[auth.ScopeRead], "")
	wantAnswer(t, resp, data, http.StatusOK, &pg)
	if len(pg.Items) != 2 || pg.Items[0].Seq != 3 {
		t.Fatalf("after=2: %s", data)
	}
	for _, q := range []string{"?after=-1", "?after=x", "?limit=0", "?cursor=!!", "?seq=1"} {
		resp, data = e.do(t, "GET", "/v1/audit"+q, e.token[auth.ScopeRead], "")
		if resp.StatusCode != 400 && resp.StatusCode != 422 {
			t.Errorf("GET /v1/audit%s: %d %s", q, resp.StatusCode, data)
		}
	}

	var v struct {
		Valid   bool   `json:"valid"`
		Entries int64  `json:"entries"`
		Head    string `json:"head"`
		Detail  string `json:"detail"`
	}
	resp, data = e.do(t, "GET", "/v1/audit/verify", e.token[auth.ScopeRead], "")
	wantAnswer(t, resp, data, http.StatusOK, &v)
	if !v.Valid || v.Entries != 4 || v.Head != all.Items[3].Hash {
		t.Fatalf("verify: %s", data)
	}
	// An entry changed behind the server's back breaks the chain.
	if _, err := e.db.Exec(context.Background(), `UPDATE audit SET actor = 'token:nobody' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	v.Valid = true
	resp, data = e.do(t, "GET", "/v1/audit/verify", e.token[auth.ScopeRead], "")
	wantAnswer(t, resp, data, http.StatusOK, &v)
	if v.Valid || v.Detail == "" {
		t.Fatalf("verify after tampering: %s", data)
	}
	resp, data = e.do(t, "GET", "/v1/audit", "", "")
	wantAnswer(t, resp, data, http.StatusUnauthorized, nil)
}
