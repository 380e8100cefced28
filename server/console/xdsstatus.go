package console

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// XDSSource is one mcc xds instance whose /status the gateways view reads
// when it is rendered, as istioctl proxy-status asks istiod: nothing about
// Envoy nodes is stored, so the view is as current as the control plane.
type XDSSource struct {
	URL    string // the admin port's /status, e.g. http://127.0.0.1:18001/status
	token  string
	client *http.Client
}

// xdsStatusTimeout bounds one read: an unreachable control plane is shown
// as such, never a hanging page.
const xdsStatusTimeout = 3 * time.Second

// maxXDSStatusBytes bounds the answer read (a status with thousands of
// nodes is a few MiB).
const maxXDSStatusBytes = 8 << 20

// NewXDSSource checks rawURL and prepares its client. token is the admin
// token of mcc xds (--admin-token-file there), "" when it has none;
// caFile, when not "", holds the PEM CA that signed an https admin port's
// certificate (the system roots otherwise). A token never goes over plain
// HTTP off loopback: such a URL is refused.
func NewXDSSource(rawURL, token, caFile string) (*XDSSource, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("xds status %q: %w", rawURL, err)
	}
	if u.Host == "" || u.User != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("xds status %q: want http(s)://host:port/status without credentials", rawURL)
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("xds status %q: plain http only to a loopback address; an admin port off loopback speaks TLS (https://)", rawURL)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("xds status CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("xds status CA %s: no PEM certificate", caFile)
		}
		tlsConf.RootCAs = pool
	}
	return &XDSSource{URL: u.String(), token: token, client: &http.Client{
		Timeout: xdsStatusTimeout,
		// The status is read from the URL given, not from wherever a
		// redirect points (with the token).
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{TLSClientConfig: tlsConf, Proxy: nil, MaxIdleConnsPerHost: 2},
	}}, nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Status reads the control plane's status now.
func (x *XDSSource) Status(ctx context.Context) (xdsStatus, error) {
	var st xdsStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, x.URL, nil)
	if err != nil {
		return st, err
	}
	if x.token != "" {
		req.Header.Set("Authorization", "Bearer "+x.token)
	}
	resp, err := x.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL
		}
		return st, fmt.Errorf("unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxXDSStatusBytes+1))
	if err != nil {
		return st, fmt.Errorf("reading the status: %w", err)
	}
	if len(body) > maxXDSStatusBytes {
		return st, fmt.Errorf("the status is over %d bytes", maxXDSStatusBytes)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("the status is not mcc xds's JSON: %w", err)
	}
	return st, nil
}

// Display is the URL as the view shows it: scheme, host and path.
func (x *XDSSource) Display() string {
	u, err := url.Parse(x.URL)
	if err != nil {
		return x.URL
	}
	return u.Scheme + "://" + u.Host + u.Path
}

// syncState is a node's state for one resource type, in istioctl
// proxy-status's words: SYNCED (it ACKed what its group serves), STALE
// (it ACKed another version), NOT SENT (it ACKed nothing of the type).
func syncState(served, acked string) string {
	switch {
	case acked == "":
		return "NOT SENT"
	case acked == served:
		return "SYNCED"
	default:
		return "STALE"
	}
}

// typeOrder is the order resource types are shown in.
var typeOrder = []string{"listener", "route", "cluster", "endpoint", "secret", "runtime", "extension_config"}

// xdsStatus is the part of mcc xds's /status JSON (xds/serve.Status) the
// gateways view reads. It is decoded here rather than imported: the
// server does not link the control plane (internal/archtest), and
// TestXDSStatusDecodesServeStatus holds the two to the same fields.
type xdsStatus struct {
	Config struct {
		Version         string    `json:"version"`
		LoadedAt        time.Time `json:"loaded_at"`
		LastLoadError   string    `json:"last_load_error"`
		LastLoadErrorAt time.Time `json:"last_load_error_at"`
		Warnings        []string  `json:"warnings"`
	} `json:"config"`
	Groups []struct {
		Cluster          string            `json:"cluster"`
		Version          string            `json:"version"`
		PublishedAt      time.Time         `json:"published_at"`
		Versions         map[string]string `json:"versions"`
		LastACKedVersion string            `json:"last_acked_version"`
		RolledBackFrom   string            `json:"rolled_back_from"`
		Rejected         map[string]string `json:"rejected"`
	} `json:"groups"`
	Nodes []struct {
		ID             string            `json:"id"`
		Cluster        string            `json:"cluster"`
		Connected      bool              `json:"connected"`
		Protocol       string            `json:"protocol"`
		UnknownCluster bool              `json:"unknown_cluster"`
		Acked          map[string]string `json:"acked"`
		LastNACK       *xdsNACK          `json:"last_nack"`
		LastSeen       time.Time         `json:"last_seen"`
	} `json:"nodes"`
}

// xdsNACK is a node's last rejection.
type xdsNACK struct {
	Type    string    `json:"type"`
	Version string    `json:"version"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}
