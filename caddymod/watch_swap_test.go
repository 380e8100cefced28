package caddymod

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// The Caddy app sees a Kubernetes ConfigMap update of its fusion set file (a
// "..data" symlink swapped to a new directory) whose new file has the same
// size and mtime as the old, by file notification and content: the safety
// poll is an hour, so it cannot be what notices.
func TestWatchConfigMapSwapSameSizeAndMtime(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)
	version := func(msg string) []byte {
		p := corp.WriteSetFile(t, "tmp-"+msg[:3]+".yaml", func(sc *fusion.SetConfig) { sc.Message = msg })
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	v1, v2 := version("One version."), version("Two version.")
	if len(v1) != len(v2) {
		t.Fatal("test setup: versions differ in size")
	}
	mtime := time.Now().Add(-time.Hour).Truncate(time.Second)
	// swap lays out dir/..<stamp>/watched.yaml and points ..data at it, as
	// the kubelet does; watched.yaml -> ..data/watched.yaml stays.
	swap := func(stamp string, data []byte) {
		ts := filepath.Join(corp.Dir, stamp)
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(ts, "watched.yaml")
		writeFile(t, f, data, 0o644)
		if err := os.Chtimes(f, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(corp.Dir, "..data_tmp")
		if err := os.Symlink(stamp, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(corp.Dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	swap("..2026_12_05_00_00_00.1", v1)
	setFile := filepath.Join(corp.Dir, "watched.yaml")
	if err := os.Symlink(filepath.Join("..data", "watched.yaml"), setFile); err != nil {
		t.Fatal(err)
	}
	cfg := globalOptions() + fmt.Sprintf(`	mcc {
		fusion_sets %s
		watch_interval 1h
	}
}
`, setFile) + site(srv, "\t\t\tmode request", fmt.Sprintf("\tfusion_set %s\n\treverse_proxy %s", corp.SetID, up.addr()))
	loadCaddyfile(t, cfg)
	accept := "Accept: application/json"
	if r := newClient(t, srv, nil, "").mustGet(t, "/", accept); r.status != http.StatusForbidden || !strings.Contains(r.body, "One version.") {
		t.Fatalf("before the swap: %d %q", r.status, r.body)
	}
	swap("..2026_12_05_00_01_00.2", v2)
	if err := os.RemoveAll(filepath.Join(corp.Dir, "..2026_12_05_00_00_00.1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the swapped file to be loaded", func() bool {
		return strings.Contains(newClient(t, srv, nil, "").mustGet(t, "/", accept).body, "Two version.")
	})
}

// TestWatchRetriesAFileThatNamesAMissingFile: the fusion set file is
// rewritten first and names a revocation list that does not exist yet; the
// refusal is reported once, and when the list appears (no watched file
// changes) the file is tried again on a tick and the list is enforced.
func TestWatchRetriesAFileThatNamesAMissingFile(t *testing.T) {
	resetCaddy(t)
	srv := newServerTLS(t)
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	up := newUpstream(t)
	setFile := corp.WriteSetFile(t, "watched.yaml", nil)
	cfg := globalOptions() + fmt.Sprintf(`	mcc {
		fusion_sets %s
		watch_interval 50ms
	}
}
`, setFile) + site(srv, "\t\t\tmode request", fmt.Sprintf("\tfusion_set %s\n\treverse_proxy %s", corp.SetID, up.addr()))
	loadCaddyfile(t, cfg)
	accept := "Accept: application/json"
	valid := corp.Case(t, "valid")
	cert := valid.TLSCertificate()
	if r := newClient(t, srv, &cert, "").mustGet(t, "/", accept); r.status != http.StatusOK {
		t.Fatalf("valid certificate: %d %q", r.status, r.body)
	}

	st := runningState(t)
	failures := st.reloadFailures.Load()
	list := filepath.Join(corp.Dir, "revoked-later.txt")
	corp.WriteSetFile(t, "watched.yaml", func(sc *fusion.SetConfig) {
		sc.Revocation.Files = append(sc.Revocation.Files, list)
	})
	waitFor(t, "the watcher to refuse the file", func() bool { return st.reloadFailures.Load() > failures })
	// Retried at every 50 ms tick, reported once.
	time.Sleep(300 * time.Millisecond)
	if n := st.reloadFailures.Load(); n != failures+1 {
		t.Errorf("%d refusals counted for one unchanged error, want 1", n-failures)
	}
	writeFile(t, list, []byte(valid.Leaf().SerialNumber.Text(16)+"\n"), 0o644)
	waitFor(t, "the revocation list to be enforced", func() bool {
		return blockReason(newClient(t, srv, &cert, "").mustGet(t, "/", accept)) == string(threat.ReasonCertRevoked)
	})
}
