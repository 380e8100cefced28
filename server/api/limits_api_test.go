package api_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/mccgate/mcc/server/auth"
)

// TestLargeBodiesBounded: a token cannot make the server hold more than a
// few event batches at once (each takes tens of MiB while it is checked):
// with four uploads in flight, the fifth is answered 429 with Retry-After
// before its body is read, and once they end, batches are taken again.
func TestLargeBodiesBounded(t *testing.T) {
	e := startAPI(t, envOptions{scopes: []auth.Scope{auth.ScopeEventsWrite}})
	token := e.token[auth.ScopeEventsWrite]
	var writers []*io.PipeWriter
	// Held uploads end before the server closes (cleanups run last in,
	// first out), or a failing test would wait for them forever.
	t.Cleanup(func() {
		for _, pw := range writers {
			pw.CloseWithError(io.ErrUnexpectedEOF)
		}
	})
	done := make(chan int, 4)
	for range 4 {
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		req, err := http.NewRequest("POST", e.srv.URL+"/v1/events", pr)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		go func() {
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				done <- -1
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		if _, err := pw.Write([]byte(`{"events":[`)); err != nil { // the handler is reading it
			t.Fatal(err)
		}
	}
	// The held uploads reach their handlers soon after their first bytes
	// were taken by the client; until then a fifth batch may pass.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := e.do(t, "POST", "/v1/events", token, `{"events":[]}`, "Content-Type", "application/json")
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "1" {
			break
		}
		if resp.StatusCode != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("a fifth batch in flight: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, pw := range writers {
		pw.Write([]byte(`]}`))
		pw.Close()
	}
	for range 4 {
		select {
		case status := <-done:
			if status != http.StatusOK {
				t.Fatalf("a held batch ended with %d", status)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the held batches did not finish")
		}
	}
	if resp, body := e.do(t, "POST", "/v1/events", token, `{"events":[]}`, "Content-Type", "application/json"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the held batches: %d %s", resp.StatusCode, body)
	}
}
