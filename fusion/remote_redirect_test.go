package fusion_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
)

// TestRemoteRedirectStaysOnHost: a revocation server cannot aim the
// gateway at another service on its loopback: a redirect to plain http on
// another host (here another port) is not followed, and the URL is down.
func TestRemoteRedirectStaysOnHost(t *testing.T) {
	c := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	var probed atomic.Int64
	inside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		probed.Add(1)
	}))
	defer inside.Close()
	var asked atomic.Int64
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.Redirect(w, r, inside.URL+"/admin/secret", http.StatusFound)
	}))
	defer redirector.Close()
	path := c.WriteSetFile(t, "redirect.yaml", func(s *fusion.SetConfig) {
		s.Revocation.URLs = []string{redirector.URL + "/crl.pem"}
		s.Revocation.URLInterval = fusion.Duration(time.Second)
	})
	e := loadEngine(t, path, fusion.Options{Clock: func() time.Time { return c.Now }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.FollowRevocationURLs(ctx)
	}()
	eventually(t, 10*time.Second, "a fetch", func() bool { return asked.Load() > 0 })
	time.Sleep(300 * time.Millisecond)
	cancel()
	<-done
	if n := probed.Load(); n != 0 {
		t.Fatalf("the gateway followed the redirect to %s %d times", inside.URL, n)
	}
	set, _ := e.Set(c.SetID)
	if st := set.RevocationURLStates(); len(st) != 1 || st[0].Up {
		t.Fatalf("states %+v: the refused redirect must leave the URL down", st)
	}
}
