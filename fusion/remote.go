package fusion

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Revocation URLs: a set's revocation.urls are CRLs that the gateway
// fetches (the mcc server's /v1/fusion-sets/{set}/crl.pem), so that a
// revocation made through the server's API is enforced without anyone
// writing a file. The rules, the same at both gateways (the Caddy app and
// `mcc authz` both run FollowRevocationURLs):
//
//   - Each URL is fetched every url_interval with If-None-Match (the ETag
//     of the last good answer), bounded in size and time.
//   - A fetched CRL is admitted as a CRL file is: its signature must verify
//     against the set's trusted CA or intermediates, and its CRL number may
//     not go below one already seen for that issuer (the process-wide
//     highWater of crl.go). Freshness (NextUpdate) is judged as for files.
//   - A refused answer (bad signature, older number, not a CRL, an HTTP
//     error) or an unreachable server keeps the last good CRL in force.
//     The failure is logged once when it starts and once when the URL
//     recovers, and exported as revocation_url_up.
//   - The last good CRL of a URL belongs to the process, by fusion set id
//     and URL, not to a loaded configuration: a reload of the fusion set
//     file (Caddy's or the file watcher's) keeps it.
//   - Before the first good fetch the set serves with its other revocation
//     data, and the missing CRL is logged as an error. This fails open for
//     revocations the URL alone carries, deliberately: failing closed would
//     turn a server that is down, or not yet reachable when a gateway
//     starts, into a gateway that refuses every app. Once a CRL was fetched
//     it stays in force, and when its NextUpdate passes the certificates it
//     covers are refused (CONFIG_ERROR), as with an expired CRL file.
//   - A new CRL swaps in a new revocation generation: cached verdicts of the
//     previous one no longer apply.

const (
	// maxRemoteCRLSize bounds a fetched CRL (a million entries is about
	// 40 MiB of DER).
	maxRemoteCRLSize = 64 << 20
	// remoteFetchTimeout bounds one fetch, connection included.
	remoteFetchTimeout = 10 * time.Second
	// followTick is how often FollowRevocationURLs looks for a due URL; it
	// is well below MinRevocationURLInterval so a URL is fetched close to
	// its interval.
	followTick = 200 * time.Millisecond
	// maxRemoteRedirects bounds the redirects of one fetch.
	maxRemoteRedirects = 3
)

// remoteKey names the state of one URL of one fusion set.
type remoteKey struct{ set, url string }

// remoteGood is a CRL fetched and admitted, shared read-only by every
// generation that includes it.
type remoteGood struct {
	file    *crlFile
	sum     [sha256.Size]byte
	version uint64 // counts the good CRLs of its URL, from 1
}

// remoteState is what the process knows of one URL of one set. Its fields
// are guarded by mu.
type remoteState struct {
	mu          sync.Mutex
	good        *remoteGood
	etag        string
	inflight    bool
	lastAttempt time.Time
	lastSuccess time.Time
	// up is the result of the last fetch; failing says a failure was
	// logged and a recovery has not been.
	up, failing bool
}

// remoteStates are every URL's state in this process.
var remoteStates = struct {
	sync.Mutex
	m map[remoteKey]*remoteState
}{m: map[remoteKey]*remoteState{}}

func remoteStateFor(k remoteKey) *remoteState {
	remoteStates.Lock()
	defer remoteStates.Unlock()
	st := remoteStates.m[k]
	if st == nil {
		st = &remoteState{}
		remoteStates.m[k] = st
	}
	return st
}

func (st *remoteState) current() *remoteGood {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.good
}

// addRemote appends the last good CRL of each of src's URLs to rs (which
// holds the file data only), re-admitting each against src's issuers: the
// set may have been reloaded with another CA since the fetch. A CRL that
// is no longer admitted is left out, as if not fetched yet; the next fetch
// says why.
func (rs *revocationSet) addRemote(src *revocationSource) {
	rs.fileLists, rs.fileCRLs = len(rs.lists), len(rs.crls)
	rs.remoteVersions = make([]uint64, len(src.remote.urls))
	for i, u := range src.remote.urls {
		good := remoteStateFor(remoteKey{src.remote.setID, u.raw}).current()
		if good == nil {
			continue
		}
		infos, err := admitCRLs(good.file, u.label, u.field, src.issuers)
		if err != nil {
			continue
		}
		rs.crls = append(rs.crls, infos...)
		rs.lists = append(rs.lists, good.file.revoked)
		rs.remoteVersions[i] = good.version
	}
}

// admitCRLs checks every CRL of cf against issuers and the high water
// mark, returning what the engine keeps of each.
func admitCRLs(cf *crlFile, path, field string, issuers []*x509.Certificate) ([]*crlInfo, error) {
	infos := make([]*crlInfo, 0, len(cf.crls))
	for i, crl := range cf.crls {
		signer := cf.signer(i, issuers)
		if signer == nil {
			return nil, errors.New("CRL signature does not verify against the trusted CA or intermediates")
		}
		info := newCRLInfo(path, field, crl, signer)
		if err := crlHighWater.admit(info); err != nil {
			return nil, err
		}
		infos = append(infos, info)
	}
	return infos, nil
}

// remoteBehind reports whether a URL of s has a good CRL that s's current
// generation does not include.
func (s *Set) remoteBehind() bool {
	rs := s.rev.Load()
	if rs == nil {
		return false
	}
	for i, u := range s.revSrc.remote.urls {
		good := remoteStateFor(remoteKey{s.ID, u.raw}).current()
		if good != nil && (i >= len(rs.remoteVersions) || rs.remoteVersions[i] != good.version) {
			return true
		}
	}
	return false
}

// applyRemote swaps in a generation of s with its file data as it is and
// the last good CRL of each URL.
func (s *Set) applyRemote() {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.rev.Load()
	if old == nil {
		return
	}
	next := &revocationSet{
		gen:          old.gen + 1,
		serials:      old.serials,
		fingerprints: old.fingerprints,
		lists:        old.lists[:old.fileLists:old.fileLists],
		crls:         old.crls[:old.fileCRLs:old.fileCRLs],
	}
	next.addRemote(&s.revSrc)
	s.rev.Store(next)
}

// FollowRevocationURLs fetches the revocation.urls of the sets the engine
// serves, each every url_interval, until ctx is done, and swaps each new
// CRL into its set (see the rules at the top of this file). It follows the
// configuration in force, so a reload needs nothing. Engine.Watch runs it;
// a gateway that watches its files itself (the Caddy app) runs it beside.
// Several followers of one process share the fetches.
func (e *Engine) FollowRevocationURLs(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(followTick)
	defer t.Stop()
	for {
		for _, ss := range e.state.Load().sets {
			s := ss.set
			for _, u := range s.revSrc.remote.urls {
				st := remoteStateFor(remoteKey{s.ID, u.raw})
				if !st.startIfDue(time.Now(), s.revSrc.remote.interval) {
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					e.fetchRemote(ctx, s, u, st)
				}()
			}
			if s.remoteBehind() {
				s.applyRemote()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startIfDue marks a fetch of st as started when none is running and the
// last one started at least interval ago.
func (st *remoteState) startIfDue(now time.Time, interval time.Duration) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.inflight || (!st.lastAttempt.IsZero() && now.Sub(st.lastAttempt) < interval) {
		return false
	}
	st.inflight, st.lastAttempt = true, now
	return true
}

// fetchRemote fetches one URL of s once, admits what it got, and logs a
// change between failing and working.
func (e *Engine) fetchRemote(ctx context.Context, s *Set, u remoteURL, st *remoteState) {
	st.mu.Lock()
	etag, prev := st.etag, st.good
	st.mu.Unlock()
	if prev == nil {
		etag = ""
	}
	good, newETag, err := fetchCRL(ctx, s, u, etag, prev)
	if err != nil && ctx.Err() != nil {
		// Shutting down: not the server's failure.
		st.mu.Lock()
		st.inflight = false
		st.mu.Unlock()
		return
	}
	now := time.Now()
	st.mu.Lock()
	st.inflight = false
	wasFailing, first := st.failing, st.lastSuccess.IsZero()
	st.up = err == nil
	if err == nil {
		st.lastSuccess, st.failing = now, false
		if newETag != "" || good != nil {
			st.etag = newETag
		}
		if good != nil {
			good.version = 1
			if st.good != nil {
				good.version = st.good.version + 1
			}
			st.good = good
		}
	} else {
		st.failing = true
	}
	hasGood := st.good != nil
	st.mu.Unlock()

	fields := []zap.Field{zap.String("fusion_set", s.ID), zap.String("url", u.label)}
	switch {
	case err != nil && !wasFailing && !hasGood:
		e.log.Error("revocation URL: no CRL fetched yet; certificates are checked without it until a fetch succeeds",
			append(fields, zap.Error(err))...)
	case err != nil && !wasFailing:
		e.log.Warn("revocation URL failing; the last good CRL stays in force", append(fields, zap.Error(err))...)
	case err == nil && wasFailing:
		e.log.Info("revocation URL working again", fields...)
	case err == nil && first:
		e.log.Info("revocation URL fetched", fields...)
	}
	if good != nil {
		s.applyRemote()
	}
}

// fetchCRL GETs u. It returns the new good CRL (nil when unchanged), the
// answer's ETag, or why the answer is refused. Errors never quote the
// URL's query (it may carry a token).
func fetchCRL(ctx context.Context, s *Set, u remoteURL, etag string, prev *remoteGood) (*remoteGood, string, error) {
	ctx, cancel := context.WithTimeout(ctx, remoteFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.raw, nil)
	if err != nil {
		return nil, "", errors.New("invalid URL")
	}
	req.Header.Set("Accept", "application/pkix-crl, application/x-pem-file")
	req.Header.Set("User-Agent", "mcc-gateway")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := s.revSrc.remote.client().Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, "", fmt.Errorf("fetching: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && prev != nil:
		return nil, etag, nil
	case resp.StatusCode != http.StatusOK:
		return nil, "", fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	// A declared size over the bound is refused before a byte is read;
	// an undeclared one is read up to it.
	if resp.ContentLength > maxRemoteCRLSize {
		return nil, "", fmt.Errorf("answer of %d bytes, larger than %d", resp.ContentLength, maxRemoteCRLSize)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRemoteCRLSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("reading the answer: %w", err)
	}
	if len(body) > maxRemoteCRLSize {
		return nil, "", fmt.Errorf("answer larger than %d bytes", maxRemoteCRLSize)
	}
	newETag := resp.Header.Get("ETag")
	sum := sha256.Sum256(body)
	if prev != nil && sum == prev.sum {
		return nil, newETag, nil
	}
	cf, err := parseCRLFile(u.label, body)
	if err != nil {
		return nil, "", err
	}
	if _, err := admitCRLs(cf, u.label, u.field, s.revSrc.issuers); err != nil {
		return nil, "", err
	}
	return &remoteGood{file: cf, sum: sum}, newETag, nil
}

// client returns the HTTP client of the set's fetches: the system roots
// plus url_ca, TLS 1.2 at least, redirects only to URLs revocation.urls
// would accept.
func (r *remoteSource) client() *http.Client {
	r.http.once.Do(func() {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if len(r.roots) > 0 {
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			for _, c := range r.roots {
				pool.AddCert(c)
			}
			tr.TLSClientConfig.RootCAs = pool
		}
		// A reload builds a new client: idle connections of the old one
		// are closed soon.
		tr.IdleConnTimeout = 30 * time.Second
		tr.MaxResponseHeaderBytes = 64 << 10
		r.http.client = &http.Client{
			Transport: tr,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= maxRemoteRedirects {
					return fmt.Errorf("more than %d redirects", maxRemoteRedirects)
				}
				if _, err := checkRevocationURL(req.URL.String()); err != nil {
					return fmt.Errorf("redirect refused: %w", err)
				}
				// Plain http only to the host the set named: a server must
				// not be able to aim the gateway at another service on its
				// loopback (a blind GET from inside).
				if req.URL.Scheme != "https" && req.URL.Host != via[0].URL.Host {
					return fmt.Errorf("redirect refused: plain http to another host (%s)", req.URL.Host)
				}
				return nil
			},
		}
	})
	return r.http.client
}

// RevocationURLState is what a gateway knows of one revocation URL of a set.
type RevocationURLState struct {
	// URL is the URL without its query; Field its place in the file.
	URL, Field string
	// Up is the result of the last fetch (false before the first).
	Up bool
	// LastSuccess is the time of the last good fetch (zero: none yet).
	LastSuccess time.Time
}

// RevocationURLStates returns the state of each of the set's revocation
// URLs, in file order.
func (s *Set) RevocationURLStates() []RevocationURLState {
	out := make([]RevocationURLState, 0, len(s.revSrc.remote.urls))
	for _, u := range s.revSrc.remote.urls {
		st := remoteStateFor(remoteKey{s.ID, u.raw})
		st.mu.Lock()
		out = append(out, RevocationURLState{URL: u.label, Field: u.field, Up: st.up, LastSuccess: st.lastSuccess})
		st.mu.Unlock()
	}
	return out
}
