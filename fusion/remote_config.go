package fusion

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// The revocation.urls keys of a set, as the loader checks them. What is
// fetched, and when, is remote.go's.

// Defaults and bounds of revocation.url_interval.
const (
	DefaultRevocationURLInterval = 5 * time.Second
	MinRevocationURLInterval     = time.Second
)

// maxRevocationURLLength bounds one URL: it is a metric label and a log field.
const maxRevocationURLLength = 2048

// remoteSource is a set's revocation.urls, compiled.
type remoteSource struct {
	// setID is the set's id: a URL's state is kept by set and URL.
	setID    string
	urls     []remoteURL
	interval time.Duration
	// roots are url_ca's certificates, trusted for the fetches in
	// addition to the system roots; caFile is its absolute path.
	roots  []*x509.Certificate
	caFile string
	// http is the fetches' client, built at the first fetch.
	http *lazyClient
}

// lazyClient is an HTTP client built once, when first used.
type lazyClient struct {
	once   sync.Once
	client *http.Client
}

// remoteURL is one entry of revocation.urls.
type remoteURL struct {
	// raw is the URL as written; label is what logs and metrics show of
	// it (no query: it may carry a token); field is its place in the file.
	raw, label, field string
}

func (c *setCompiler) compileRemote(s *Set, rc Revocation, baseDir string) {
	rs := &s.revSrc.remote
	rs.setID, rs.http = s.ID, &lazyClient{}
	seen := make(map[string]bool, len(rc.URLs))
	for i, raw := range rc.URLs {
		field := "revocation.urls[" + strconv.Itoa(i) + "]"
		label, err := checkRevocationURL(raw)
		if err != nil {
			c.addf(field, "%v", err)
			continue
		}
		if seen[raw] {
			c.addf(field, "duplicate URL %s", label)
			continue
		}
		seen[raw] = true
		rs.urls = append(rs.urls, remoteURL{raw: raw, label: label, field: c.path(field)})
	}
	rs.interval = rc.URLInterval.Std()
	switch {
	case rs.interval == 0:
		rs.interval = DefaultRevocationURLInterval
	case rs.interval < MinRevocationURLInterval:
		c.addf("revocation.url_interval", "%s is shorter than the minimum %s", rs.interval, MinRevocationURLInterval)
	}
	if len(rc.URLs) == 0 {
		if rc.URLInterval != 0 {
			c.addf("revocation.url_interval", "has no effect without revocation.urls")
		}
		if rc.URLCA != "" {
			c.addf("revocation.url_ca", "has no effect without revocation.urls")
		}
	}
	if rc.URLCA == "" {
		return
	}
	if c.files.inline {
		c.addf("revocation.url_ca", inlineFileRefused+"the fetches trust the system roots")
		return
	}
	rs.caFile = absPath(baseDir, rc.URLCA)
	certs, err := parseFile(c.files, rs.caFile, maxCAFileSize, "ca bundle", func(_ string, data []byte) ([]*x509.Certificate, error) {
		return parseCertBundle(data)
	})
	if err != nil {
		c.addf("revocation.url_ca", "%v", err)
		return
	}
	rs.roots = slices.Clone(certs)
}

// checkRevocationURL checks one revocation URL and returns what logs and
// metrics may show of it. The URL is fetched by the gateway with no
// credential of its own: what it fetches is public (the CRL) but must not
// be altered in transit to un-revoke, hence https, or http only where
// nothing is on the network.
func checkRevocationURL(raw string) (label string, err error) {
	if len(raw) > maxRevocationURLLength {
		return "", fmt.Errorf("URL longer than %d bytes", maxRevocationURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("%q is not an absolute http(s) URL", truncate(raw, 80))
	}
	if u.User != nil {
		// Never quoted: it holds the credential.
		return "", fmt.Errorf("credentials in a revocation URL are refused: it is logged and exported as a metric label")
	}
	label = redactedURL(u)
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return "", fmt.Errorf("%s: the scheme must be https (or http to a loopback host)", label)
	case u.Scheme == "http" && !confidential(raw):
		return "", fmt.Errorf("%s: plain http is allowed only to a loopback host: a CRL altered in transit could hide a revocation; use https", label)
	case u.Fragment != "":
		return "", fmt.Errorf("%s: a URL fragment is never sent: remove it", label)
	}
	return label, nil
}

// redactedURL is u without its query, which may carry a token.
func redactedURL(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	out := r.String()
	if u.RawQuery != "" {
		out += "?…"
	}
	return out
}
