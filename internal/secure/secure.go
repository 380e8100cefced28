// Package secure holds the rules every mcc listener follows, written once:
//
//   - a listener that is not on loopback speaks TLS; the gRPC listeners that
//     Envoy calls (mcc xds, mcc authz) also require Envoy's client
//     certificate (mTLS). Plaintext off loopback needs an explicit
//     --insecure-plaintext, and is warned about at every start;
//   - admin endpoints take a bearer token compared in constant time, whose
//     length does not leak either;
//   - secrets come from files, never from flags or logs.
//
// The flags are the same on every command that serves Envoy, so the README
// and the examples describe them once.
package secure

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// ServerFlags configure TLS on a listener that Envoy connects to.
type ServerFlags struct {
	CertFile          string
	KeyFile           string
	ClientCAFile      string
	InsecurePlaintext bool
}

// Register adds --tls-cert, --tls-key, --client-ca and --insecure-plaintext
// to fs.
func (f *ServerFlags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.CertFile, "tls-cert", "", "PEM `file` with the server certificate chain (TLS on the gRPC and admin listeners)")
	fs.StringVar(&f.KeyFile, "tls-key", "", "PEM `file` with the server private key")
	fs.StringVar(&f.ClientCAFile, "client-ca", "", "PEM `file` with the CA that signs Envoy's client certificates (mTLS)")
	fs.BoolVar(&f.InsecurePlaintext, "insecure-plaintext", false, "allow plaintext gRPC and admin listeners off loopback (warned at every start)")
}

// TLS reports whether a server certificate is configured.
func (f *ServerFlags) TLS() bool { return f.CertFile != "" }

// Check reports flag combinations that cannot work.
func (f *ServerFlags) Check() error {
	switch {
	case (f.CertFile == "") != (f.KeyFile == ""):
		return errors.New("--tls-cert and --tls-key go together")
	case f.ClientCAFile != "" && f.CertFile == "":
		return errors.New("--client-ca needs --tls-cert and --tls-key (client certificates are only asked for over TLS)")
	case f.InsecurePlaintext && f.CertFile != "":
		return errors.New("--insecure-plaintext and --tls-cert contradict each other")
	}
	return nil
}

// CheckListen enforces the listener rule for a gRPC address that Envoy
// calls: off loopback it must have TLS and client certificates
// (--client-ca), unless --insecure-plaintext was given, which is logged as a
// warning on every start. name is the flag, for the error ("--listen").
func (f *ServerFlags) CheckListen(name, addr string, log *zap.Logger) error {
	if err := f.Check(); err != nil {
		return err
	}
	if IsLoopback(addr) {
		return nil
	}
	switch {
	case f.InsecurePlaintext:
		log.Warn("INSECURE: serving plaintext off loopback; anyone who can reach this address is trusted as Envoy",
			zap.String("flag", name), zap.String("address", addr))
		return nil
	case f.CertFile == "":
		return fmt.Errorf("%s %s is not a loopback address: pass --tls-cert, --tls-key and --client-ca (mTLS with Envoy), or --insecure-plaintext to accept anyone who can connect", name, addr)
	case f.ClientCAFile == "":
		return fmt.Errorf("%s %s is not a loopback address: pass --client-ca so only Envoy's client certificates are accepted, or --insecure-plaintext", name, addr)
	}
	return nil
}

// CheckAdminListen enforces the rule for an admin (HTTP) address: off
// loopback it must use TLS (the same --tls-cert and --tls-key; no client
// certificate, the bearer token authenticates) unless --insecure-plaintext.
func (f *ServerFlags) CheckAdminListen(name, addr string, log *zap.Logger) error {
	if IsLoopback(addr) {
		return nil
	}
	switch {
	case f.InsecurePlaintext:
		log.Warn("INSECURE: admin endpoint served plaintext off loopback", zap.String("flag", name), zap.String("address", addr))
		return nil
	case f.CertFile == "":
		return fmt.Errorf("%s %s is not a loopback address: pass --tls-cert and --tls-key, or --insecure-plaintext", name, addr)
	}
	return nil
}

// IsLoopback reports whether a listen address (host:port) binds only to
// loopback. An empty host or an unspecified address binds everywhere and is
// not loopback; "localhost" is.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// ServerTLS returns the TLS config for a gRPC listener: the server
// certificate (re-read when its files change, so a renewed certificate needs
// no restart) and, with --client-ca, a required and verified client
// certificate. It returns nil, nil when TLS is not configured.
func (f *ServerFlags) ServerTLS() (*tls.Config, error) {
	return f.serverTLS(f.ClientCAFile)
}

// AdminTLS is ServerTLS without client certificates: admin endpoints
// authenticate with a bearer token.
func (f *ServerFlags) AdminTLS() (*tls.Config, error) {
	return f.serverTLS("")
}

func (f *ServerFlags) serverTLS(clientCA string) (*tls.Config, error) {
	if err := f.Check(); err != nil {
		return nil, err
	}
	if f.CertFile == "" {
		return nil, nil
	}
	kp := &keyPair{certFile: f.CertFile, keyFile: f.KeyFile}
	if _, err := kp.get(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get() },
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if clientCA != "" {
		pool, err := LoadPool(clientCA)
		if err != nil {
			return nil, fmt.Errorf("--client-ca: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// GRPCCredentials wraps ServerTLS for grpc.Creds; nil when TLS is off.
func (f *ServerFlags) GRPCCredentials() (credentials.TransportCredentials, error) {
	cfg, err := f.ServerTLS()
	if err != nil || cfg == nil {
		return nil, err
	}
	cfg.NextProtos = []string{"h2"}
	return credentials.NewTLS(cfg), nil
}

// LoadPool reads a PEM file of CA certificates.
func LoadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return pool, nil
}

// keyPair re-reads a certificate and key when either file's modification
// time or size changes, checked at most once a second.
type keyPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

func (k *keyPair) get() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	if k.cert != nil && now.Sub(k.checked) < time.Second {
		return k.cert, nil
	}
	k.checked = now
	stamp := fileStamp(k.certFile) + "|" + fileStamp(k.keyFile)
	if k.cert != nil && stamp == k.stamp {
		return k.cert, nil
	}
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			// A half-written renewal: keep serving the last good pair.
			return k.cert, nil
		}
		return nil, fmt.Errorf("loading --tls-cert/--tls-key: %w", err)
	}
	k.cert, k.stamp = &c, stamp
	return k.cert, nil
}

func fileStamp(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d/%d", st.ModTime().UnixNano(), st.Size())
}

// Identities lists what a verified client certificate calls itself, in the
// order they are matched: URI SANs, DNS SANs, then the subject CN.
func Identities(cert *x509.Certificate) []string {
	var ids []string
	for _, u := range cert.URIs {
		ids = append(ids, u.String())
	}
	ids = append(ids, cert.DNSNames...)
	if cert.Subject.CommonName != "" {
		ids = append(ids, cert.Subject.CommonName)
	}
	return ids
}

// PeerIdentities returns the identities of the gRPC peer's verified client
// certificate. ok is false when the connection has no verified client
// certificate (plaintext, or TLS without --client-ca).
func PeerIdentities(ctx context.Context) (ids []string, ok bool) {
	p, found := peer.FromContext(ctx)
	if !found || p.AuthInfo == nil {
		return nil, false
	}
	ti, isTLS := p.AuthInfo.(credentials.TLSInfo)
	if !isTLS || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil, false
	}
	return Identities(ti.State.VerifiedChains[0][0]), true
}

// Allowed reports whether any of ids is in allow. An empty allow list
// allows every verified peer.
func Allowed(ids, allow []string) bool {
	if len(allow) == 0 {
		return true
	}
	for _, id := range ids {
		for _, a := range allow {
			if id == a {
				return true
			}
		}
	}
	return false
}

// BearerToken wraps next so that it requires "Authorization: Bearer
// <token>". Both sides are hashed before a constant-time comparison, so
// neither the token nor its length leaks through timing. An empty token
// leaves next open.
func BearerToken(token, realm string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 || !ok {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q", realm))
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ReadSecretFile reads a secret (a token, a password) from a file. One
// trailing newline, or CRLF, is dropped, so files written by `echo` and by
// editors work; an empty secret is an error.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf("%s: file is empty", path)
	}
	return s, nil
}

// Addr is a listen address and the flag it came from, for errors.
type Addr struct{ Flag, Address string }

// Prepare applies the listener rule to every gRPC address Envoy calls and
// to the admin address (skipped when empty or "off"), then returns the gRPC
// transport credentials (nil: plaintext) and the admin TLS config (nil:
// plaintext). Every command that serves Envoy starts with it, so the rule
// is checked the same way everywhere.
func (f *ServerFlags) Prepare(log *zap.Logger, admin Addr, grpcAddrs ...Addr) (credentials.TransportCredentials, *tls.Config, error) {
	for _, a := range grpcAddrs {
		if a.Address == "" {
			continue
		}
		if err := f.CheckListen(a.Flag, a.Address, log); err != nil {
			return nil, nil, err
		}
	}
	if admin.Address != "" && admin.Address != "off" {
		if err := f.CheckAdminListen(admin.Flag, admin.Address, log); err != nil {
			return nil, nil, err
		}
	}
	creds, err := f.GRPCCredentials()
	if err != nil {
		return nil, nil, err
	}
	adminTLS, err := f.AdminTLS()
	if err != nil {
		return nil, nil, err
	}
	return creds, adminTLS, nil
}
