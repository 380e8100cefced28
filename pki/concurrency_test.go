package pki

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// Parallel CI jobs issuing from one CA directory must not break the audit
// chain (the directory lock serializes them).
func TestConcurrentIssuanceKeepsAuditChain(t *testing.T) {
	ca := newTestCA(t, CAOptions{})
	dir := t.TempDir()
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Each job loads the CA itself, as separate processes would.
			c, err := LoadCA(ca.Dir)
			if err != nil {
				errs <- err
				return
			}
			_, err = c.IssueFiles(IssueFilesOptions{Request: testRequest(), Out: filepath.Join(dir, fmt.Sprintf("app-%d.p12", i))})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	sum, err := VerifyAudit(ca.Path(AuditFile), ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Entries != n+1 {
		t.Fatalf("audit entries %d, want %d", sum.Entries, n+1)
	}
}
