// Command goclient is the smallest complete Go client of an mcc-protected
// API: it loads the app's PKCS#12 bundle, calls the API over mTLS with the
// device context headers, shows the block message with its reference when
// the gateway refuses, and, when an enrollment URL is set, trades the
// bundle for an install certificate (a key made here), uses it, renews it,
// and falls back to the bundle when enrollment is refused.
//
// Configuration comes from the environment (see README.md); the bundle's
// password is read from a file, never written in the code.
package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// Exit codes: the test and a shell script can tell them apart.
const (
	exitAllowed = 0
	exitError   = 1
	exitBlocked = 3
)

// platform is sent as the devicePlatform header; a real app sends its OS.
const platform = "go"

func main() {
	code, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(exitError)
	}
	os.Exit(code)
}

func run() (int, error) {
	apiURL := os.Getenv("MCC_URL")
	if apiURL == "" {
		return 0, errors.New("MCC_URL is not set")
	}
	roots, err := serverRoots(os.Getenv("MCC_SERVER_CA"))
	if err != nil {
		return 0, err
	}
	var bundle *tls.Certificate
	if path := os.Getenv("MCC_BUNDLE"); path != "" {
		if bundle, err = loadBundle(path, os.Getenv("MCC_BUNDLE_PASSWORD_FILE")); err != nil {
			return 0, err
		}
	}
	cert := bundle
	if enrollURL := os.Getenv("MCC_ENROLL_URL"); enrollURL != "" && bundle != nil {
		install, err := installCertificate(enrollURL, os.Getenv("MCC_FUSION_SET"), os.Getenv("MCC_STATE_DIR"), bundle, roots)
		var refused *refusal
		switch {
		case errors.As(err, &refused):
			// The server said no (a revoked or blocked build, a limit): the
			// app keeps working with the bundle, and the gateway decides.
			fmt.Printf("enrollment refused (HTTP %d): %s; using the bundle\n", refused.status, refused.detail)
		case err != nil:
			return 0, err
		default:
			cert = install
		}
	}
	return call(apiURL, cert, roots)
}

// loadBundle opens the PKCS#12 bundle with the password from its file. The
// file holds the password only; a trailing newline (a hand-edited file) is
// not part of it.
func loadBundle(path, passwordFile string) (*tls.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the bundle: %w", err)
	}
	if passwordFile == "" {
		return nil, errors.New("MCC_BUNDLE_PASSWORD_FILE is not set")
	}
	pw, err := os.ReadFile(passwordFile)
	if err != nil {
		return nil, fmt.Errorf("reading the bundle password: %w", err)
	}
	password := strings.TrimRight(string(pw), "\r\n")
	if bytes.HasPrefix(data, []byte(envelopeMagic)) {
		if data, err = openEnvelope(data, password); err != nil {
			return nil, err
		}
	}
	// The bundle's other certificate is the client CA, which the gateway
	// has already: only the leaf is sent.
	key, leaf, _, err := pkcs12.DecodeChain(data, password)
	if err != nil {
		return nil, fmt.Errorf("opening the bundle: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// envelopeMagic starts a bundle in an AES-256-GCM envelope (mcc issue
// --profile android|ios): magic, 16-byte salt, 12-byte nonce, then the
// PKCS#12 file sealed with AES-256-GCM under PBKDF2-HMAC-SHA256(password,
// salt, 10000 iterations), the magic as additional data.
const envelopeMagic = "MCCENV01"

// openEnvelope returns the PKCS#12 file inside an envelope. A real app
// does this in memory and hands the result to the platform importer.
func openEnvelope(data []byte, password string) ([]byte, error) {
	const header = len(envelopeMagic) + 16 + 12
	if len(data) < header+16 {
		return nil, errors.New("opening the bundle: the envelope is cut short")
	}
	key, err := pbkdf2.Key(sha256.New, password, data[len(envelopeMagic):len(envelopeMagic)+16], 10000, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	p12, err := gcm.Open(nil, data[len(envelopeMagic)+16:header], data[header:], []byte(envelopeMagic))
	if err != nil {
		return nil, errors.New("opening the bundle: the envelope does not open (wrong password or damaged file)")
	}
	return p12, nil
}

// serverRoots trusts the system roots, or only the given PEM file (a test
// gateway's own CA).
func serverRoots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil // the system roots
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading MCC_SERVER_CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("MCC_SERVER_CA %s holds no PEM certificate", file)
	}
	return pool, nil
}

func httpClient(cert *tls.Certificate, roots *x509.CertPool) *http.Client {
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// deviceHeaders are the device context the fusion set maps into its
// events (device_headers). A real app fills them from the device.
func deviceHeaders(h http.Header) {
	h.Set("X-Device-Id", envOr("MCC_DEVICE_ID", "go-example-device"))
	h.Set("X-Os-Version", "go1")
	h.Set("X-Device-Platform", platform)
	h.Set("X-App-Version", "1.0.0")
}

// call calls the protected API and shows what the user would see.
func call(apiURL string, cert *tls.Certificate, roots *x509.CertPool) (int, error) {
	req, err := http.NewRequest(http.MethodGet, apiURL, nil)
	if err != nil {
		return 0, err
	}
	deviceHeaders(req.Header)
	// JSON block responses carry the message and the reference as fields.
	req.Header.Set("Accept", "application/json")
	resp, err := httpClient(cert, roots).Do(req)
	if err != nil {
		return 0, fmt.Errorf("calling the API: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("reading the API's answer: %w", err)
	}
	if resp.StatusCode == http.StatusOK {
		fmt.Printf("allowed: HTTP 200: %s\n", strings.TrimSpace(string(body)))
		return exitAllowed, nil
	}
	// A block: show the set's message and the reference the user quotes
	// to support (also in the x-mcc-external-id header).
	var block struct {
		Message    string `json:"message"`
		ExternalID string `json:"externalID"`
		ReasonCode string `json:"reasonCode"`
	}
	if err := json.Unmarshal(body, &block); err != nil || block.Message == "" {
		return 0, fmt.Errorf("the API answered HTTP %d: %.200q", resp.StatusCode, body)
	}
	ref := block.ExternalID
	if ref == "" {
		ref = resp.Header.Get("X-Mcc-External-Id")
	}
	fmt.Printf("blocked: %s (reference: %s)\n", block.Message, ref)
	return exitBlocked, nil
}

// refusal is the enrollment server's no: a problem+json answer.
type refusal struct {
	status    int
	detail    string
	renewFrom string // set on a renewal that came too early
}

func (r *refusal) Error() string { return fmt.Sprintf("HTTP %d: %s", r.status, r.detail) }

// installAnswer is the enrollment and renewal answer (docs/api.md).
type installAnswer struct {
	Serial      string    `json:"serial"`
	InstallID   string    `json:"installId"`
	Certificate string    `json:"certificate"`
	NotAfter    time.Time `json:"notAfter"`
	RenewAfter  time.Time `json:"renewAfter"`
}

// installState is what the app keeps in its private storage
// (MCC_STATE_DIR/install.json here, written whole and atomically): the
// key (a real app keeps it in the Android Keystore or the Secure Enclave,
// where it cannot be read out), the key a renewal is under way for, and
// the server's answer.
type installState struct {
	Key        []byte         `json:"key"`                  // PKCS#8 DER
	PendingKey []byte         `json:"pendingKey,omitempty"` // the next key, kept until its renewal succeeds
	Answer     *installAnswer `json:"answer"`
}

const stateFile = "install.json"

// installCertificate returns the install certificate to call with: the
// stored one, renewed once its renewAfter has passed, or a new enrollment
// when there is none or the server refused the stored one.
func installCertificate(base, set, stateDir string, bundle *tls.Certificate, roots *x509.CertPool) (*tls.Certificate, error) {
	if set == "" {
		return nil, errors.New("MCC_FUSION_SET is not set")
	}
	if stateDir == "" {
		return nil, errors.New("MCC_STATE_DIR is not set (where the install key and certificate are kept)")
	}
	st, err := loadState(stateDir)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return enroll(base, set, stateDir, bundle, roots)
	}
	key, err := parseKey(st.Key)
	if err != nil {
		return nil, err
	}
	cert, err := installCert(st.Answer, key)
	if err != nil {
		return nil, err
	}
	if time.Now().Before(st.Answer.RenewAfter) {
		return cert, nil
	}
	// Each renewal brings a new key, made and kept before the request: a
	// retry after a lost answer sends the same key (the server answers it
	// again), while a copy of this state renewing on its own makes another
	// key, which the server takes for a clone and revokes the install.
	if st.PendingKey == nil {
		next, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("device key: %w", err)
		}
		if st.PendingKey, err = x509.MarshalPKCS8PrivateKey(next); err != nil {
			return nil, err
		}
		if err := saveState(stateDir, st); err != nil {
			return nil, err
		}
	}
	pending, err := parseKey(st.PendingKey)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, pending)
	if err != nil {
		return nil, fmt.Errorf("device CSR: %w", err)
	}
	next, err := post(base, set, "renew", cert, roots, map[string]any{"csr": base64.StdEncoding.EncodeToString(csr)})
	var refused *refusal
	switch {
	case errors.As(err, &refused) && refused.renewFrom != "":
		// Too early by the server's clock (this device's runs ahead):
		// the certificate is still good, renew on a later start.
		fmt.Printf("renewal: too early (from %s); keeping serial %s\n", refused.renewFrom, st.Answer.Serial)
		return cert, nil
	case errors.As(err, &refused) && (refused.status == http.StatusForbidden || refused.status == http.StatusConflict):
		// Revoked, expired, or the install was revoked as cloned: start
		// over from the bundle.
		fmt.Printf("renewal refused (HTTP %d): %s; enrolling again\n", refused.status, refused.detail)
		return enroll(base, set, stateDir, bundle, roots)
	case err != nil && time.Now().Before(cert.Leaf.NotAfter):
		// The server is busy or unreachable: the certificate still works.
		fmt.Printf("renewal failed (%v); keeping serial %s\n", err, st.Answer.Serial)
		return cert, nil
	case err != nil:
		return nil, fmt.Errorf("renewing: %w", err)
	}
	if cert, err = installCert(next, pending); err != nil {
		return nil, err
	}
	if err := saveState(stateDir, &installState{Key: st.PendingKey, Answer: next}); err != nil {
		return nil, err
	}
	fmt.Printf("renewed: serial %s, renew after %s\n", next.Serial, next.RenewAfter.Format(time.RFC3339))
	return cert, nil
}

// enroll makes a device key, trades the bundle for an install
// certificate for it over mTLS, and keeps both.
func enroll(base, set, stateDir string, bundle *tls.Certificate, roots *x509.CertPool) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("device key: %w", err)
	}
	// The server takes only the key from the CSR: the identity comes from
	// the build certificate.
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("device CSR: %w", err)
	}
	// A new install id with every new key: the server binds an install id
	// to the key of its live certificate.
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("install id: %w", err)
	}
	ans, err := post(base, set, "enroll", bundle, roots, map[string]any{
		"csr":       base64.StdEncoding.EncodeToString(csr),
		"installId": hex.EncodeToString(b),
		"device":    map[string]string{"deviceID": envOr("MCC_DEVICE_ID", "go-example-device"), "devicePlatform": platform},
	})
	if err != nil {
		return nil, err
	}
	cert, err := installCert(ans, key)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := saveState(stateDir, &installState{Key: der, Answer: ans}); err != nil {
		return nil, err
	}
	fmt.Printf("enrolled: install %s, serial %s, valid until %s\n", ans.InstallID, ans.Serial, ans.NotAfter.Format(time.RFC3339))
	return cert, nil
}

func parseKey(der []byte) (*ecdsa.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("the kept install key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("the kept install key is not ECDSA")
	}
	return key, nil
}

// loadState reads the kept install state; nil when there is none yet.
func loadState(dir string) (*installState, error) {
	raw, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the install state: %w", err)
	}
	var st installState
	if err := json.Unmarshal(raw, &st); err != nil || st.Key == nil || st.Answer == nil {
		return nil, fmt.Errorf("the install state in %s is damaged: %v", dir, err)
	}
	return &st, nil
}

// saveState writes the state whole: a temporary file (0600) renamed into
// place, so a crash leaves the old state or the new one, never half.
func saveState(dir string, st *installState) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".install-*.json")
	if err != nil {
		return fmt.Errorf("keeping the install state: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename: nothing to remove
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return fmt.Errorf("keeping the install state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("keeping the install state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keeping the install state: %w", err)
	}
	return os.Rename(f.Name(), filepath.Join(dir, stateFile))
}

func installCert(a *installAnswer, key *ecdsa.PrivateKey) (*tls.Certificate, error) {
	block, _ := pem.Decode([]byte(a.Certificate))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("the enrollment answer holds no certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("install certificate: %w", err)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("the install certificate is not for this device's key")
	}
	return &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// post calls an enrollment route over mTLS with cert.
func post(base, set, route string, cert *tls.Certificate, roots *x509.CertPool, body any) (*installAnswer, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	u := strings.TrimRight(base, "/") + "/v1/fusion-sets/" + url.PathEscape(set) + "/" + route
	resp, err := httpClient(cert, roots).Post(u, "application/json", bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", route, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", route, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		var p struct {
			Title     string `json:"title"`
			Detail    string `json:"detail"`
			RenewFrom string `json:"renewFrom"`
		}
		_ = json.Unmarshal(data, &p)
		if p.Detail == "" {
			p.Detail = p.Title
		}
		return nil, &refusal{status: resp.StatusCode, detail: p.Detail, renewFrom: p.RenewFrom}
	}
	var a installAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("%s: reading the answer: %w", route, err)
	}
	return &a, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
