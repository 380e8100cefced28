package quickstart

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/server"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/authority"
)

// The demo mcc server: the quickstart shows install certificates with an
// mcc server in the same process, serving only its enrollment listener on
// the port after the gateway's. It trusts the demo CA (imported at each
// start) and publishes the quickstart's fusion set, so the demo bundle
// enrolls as a real app's would.
const (
	// ServerDataDir holds the demo server's database; the demo CA is
	// imported into it at the first start (made anew when the demo CA
	// changed).
	ServerDataDir = "server-data"
	// InstallDir is where the printed `mcc enroll` line writes the install
	// certificate and key; emptied at each start.
	InstallDir = "install"
)

// enrollment is the running demo server.
type enrollment struct {
	srv  *server.Server
	http *http.Server
	port string
}

// serverSetYAML is the quickstart set as the demo server holds it: its
// CA is the imported demo CA, so no trusted_ca; what `mcc revoke --ca`
// revoked in the demo CA's directory is listed inline (the server reads no
// files), so a revoked demo certificate does not enroll either.
func serverSetYAML(c gatewayConfig, revoked []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "fusion_sets:\n  - id: %s\n    app_id: %s\n    mode: %s\n    threat_events: true\n    device_headers:\n      deviceID: X-Device-Id\n",
		c.SetID, c.AppID, c.Mode)
	if len(revoked) > 0 {
		fmt.Fprintf(&b, "    revocation:\n      serials: [%s]\n", strings.Join(revoked, ", "))
	}
	return b.String()
}

// demoRevoked lists the serials the demo CA's CRL revokes.
func demoRevoked(caDir string) ([]string, error) {
	ca, err := pki.LoadCA(caDir)
	if err != nil {
		return nil, err
	}
	crl, err := ca.LoadCRL()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range crl.RevokedCertificateEntries {
		out = append(out, pki.FormatSerial(e.SerialNumber))
	}
	return out, nil
}

// openDemoServer opens the demo server's database with the demo CA as the
// set's CA: imported at the first start (a new demo CA has revoked
// nothing, which import requires), and the database made anew when the
// demo CA was replaced.
func openDemoServer(ctx context.Context, g *gateway) (*server.Server, error) {
	dataDir := filepath.Join(g.opts.Dir, ServerDataDir)
	demoCA, err := pki.LoadCACert(g.demo.CADir)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		srv, err := server.Open(ctx, server.Config{DataDir: dataDir})
		if err != nil {
			return nil, err
		}
		ca, err := srv.Authorities().CA(ctx, g.cfg.SetID)
		switch {
		case errors.Is(err, authority.ErrNoCA):
			err = srv.Authorities().Import(ctx, g.cfg.SetID, g.demo.CADir, "quickstart")
		case err == nil && ca.Fingerprint() != pki.Fingerprint(demoCA.Raw) && attempt == 0:
			srv.Close()
			if err := os.RemoveAll(dataDir); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			srv.Close()
			return nil, err
		}
		return srv, nil
	}
}

// enrollPort is the gateway's port plus one.
func enrollPort(port string) (string, error) {
	n, _ := strconv.Atoi(port)
	if n >= 65535 {
		return "", fmt.Errorf("--listen port %d: the demo enrollment listener takes the next port; pick a lower one", n)
	}
	return strconv.Itoa(n + 1), nil
}

// startEnrollment starts the demo server on host:port+1.
func startEnrollment(ctx context.Context, g *gateway) (*enrollment, error) {
	port, err := enrollPort(g.cfg.Port)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(g.cfg.BindHost, port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("the demo enrollment listener needs %s, the port after --listen's: %w", addr, err)
	}
	if err := os.RemoveAll(filepath.Join(g.opts.Dir, InstallDir)); err != nil {
		ln.Close()
		return nil, err
	}
	srv, err := openDemoServer(ctx, g)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("demo mcc server: %w", err)
	}
	fail := func(err error) (*enrollment, error) {
		ln.Close()
		srv.Close()
		return nil, fmt.Errorf("demo mcc server: %w", err)
	}
	revoked, err := demoRevoked(g.demo.CADir)
	if err != nil {
		return fail(err)
	}
	if err := publishSet(ctx, srv, serverSetYAML(g.cfg, revoked)); err != nil {
		return fail(err)
	}
	cert, err := tls.LoadX509KeyPair(g.cfg.ServerCert, g.cfg.ServerKey)
	if err != nil {
		return fail(err)
	}
	hs := &http.Server{Handler: srv.EnrollHandler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(tls.NewListener(ln, server.EnrollTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	return &enrollment{srv: srv, http: hs, port: port}, nil
}

// publishSet publishes doc through the API in this process, with an admin
// token that lives for this call only.
func publishSet(ctx context.Context, srv *server.Server, doc string) error {
	secret, tok, err := srv.Tokens().Create(ctx, "quickstart-publish-"+strconv.FormatInt(time.Now().UnixNano(), 36), []auth.Scope{auth.ScopeAdmin}, time.Minute, "quickstart")
	if err != nil {
		return err
	}
	defer srv.Tokens().Revoke(ctx, tok.ID, "quickstart")
	// The set's current version, if any, for If-Match.
	get := httptest.NewRequestWithContext(ctx, "GET", "/v1/fusion-sets/"+SetID, nil)
	get.Header.Set("Authorization", "Bearer "+secret)
	cur := httptest.NewRecorder()
	srv.Handler().ServeHTTP(cur, get)
	req := httptest.NewRequestWithContext(ctx, "PUT", "/v1/fusion-sets/"+SetID, strings.NewReader(doc))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/yaml")
	if etag := cur.Header().Get("ETag"); cur.Code == http.StatusOK && etag != "" {
		req.Header.Set("If-Match", etag)
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
		return fmt.Errorf("publishing the quickstart set: %d %s", rec.Code, rec.Body.String())
	}
	return nil
}

// stop shuts the demo server down.
func (e *enrollment) stop(ctx context.Context) error {
	err := e.http.Shutdown(ctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, e.srv.Close())
}
