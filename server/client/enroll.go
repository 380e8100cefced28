package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/url"
	"time"
)

// The enrollment calls: a Client made with Options.ClientCertificate
// (the build certificate shipped in the app) enrolls an install; one made
// with the install certificate renews it. They go to the server's
// enrollment listener (mcc server --enroll-listen), over mTLS.

// EnrollRequest is what an app sends to enroll.
type EnrollRequest struct {
	// CSR is the PKCS #10 request (DER) for the key the device made.
	CSR       []byte
	InstallID string
	// Device holds device context keys (deviceID, osVersion, ...).
	Device map[string]string
	// Attestation, when the set asks for one.
	Attestation *Attestation
}

// Attestation is key attestation evidence and the challenge it carries.
type Attestation struct {
	Format    string // "android-key"
	Data      []byte // android-key: the chain, leaf first, concatenated DER
	Challenge string // from Challenge
}

// InstallCert is an issued install certificate.
type InstallCert struct {
	Serial      string    `json:"serial"`
	InstallID   string    `json:"installId"`
	Certificate string    `json:"certificate"` // PEM
	CA          string    `json:"ca"`          // PEM
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	RenewAfter  time.Time `json:"renewAfter"`
	Attestation string    `json:"attestation,omitempty"`
}

// Challenge asks for the challenge an attestation of this install must
// carry (the device passes it to KeyGenParameterSpec's
// setAttestationChallenge, or to App Attest).
func (c *Client) Challenge(ctx context.Context, fusionSet, installID string) (string, error) {
	resp, err := c.do(ctx, request{method: "POST", path: enrollPath(fusionSet, "enroll/challenge"),
		body: map[string]string{"installId": installID}, repeatable: true})
	if err != nil {
		return "", err
	}
	var out struct {
		Challenge string `json:"challenge"`
	}
	if err := decode(resp, &out); err != nil {
		return "", err
	}
	return out.Challenge, nil
}

// Enroll trades the client's build certificate for an install certificate.
// It is not retried: a second enrollment would count against the limits.
func (c *Client) Enroll(ctx context.Context, fusionSet string, r EnrollRequest) (*InstallCert, error) {
	body := map[string]any{"csr": base64.StdEncoding.EncodeToString(r.CSR), "installId": r.InstallID}
	if len(r.Device) > 0 {
		body["device"] = r.Device
	}
	if a := r.Attestation; a != nil {
		body["attestation"] = map[string]string{"format": a.Format, "data": base64.StdEncoding.EncodeToString(a.Data), "challenge": a.Challenge}
	}
	return c.installCall(ctx, enrollPath(fusionSet, "enroll"), body)
}

// Renew asks for the next install certificate with the client's current
// one. csr is a request for a new key, or nil to keep the key. Each
// install certificate renews once.
func (c *Client) Renew(ctx context.Context, fusionSet string, csr []byte) (*InstallCert, error) {
	body := map[string]any{}
	if csr != nil {
		body["csr"] = base64.StdEncoding.EncodeToString(csr)
	}
	return c.installCall(ctx, enrollPath(fusionSet, "renew"), body)
}

func (c *Client) installCall(ctx context.Context, path string, body map[string]any) (*InstallCert, error) {
	resp, err := c.do(ctx, request{method: "POST", path: path, body: body})
	if err != nil {
		return nil, err
	}
	var out InstallCert
	if err := decode(resp, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func enrollPath(set, route string) string {
	return "/v1/fusion-sets/" + url.PathEscape(set) + "/" + route
}

// NewDeviceKey makes what a device makes before it enrolls: an ECDSA
// P-256 key and a CSR for it. A real app keeps the key in Android
// Keystore or the Secure Enclave; this one is in memory (tests, the CLI's
// `mcc enroll`, which plays the app).
func NewDeviceKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("device key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("device CSR: %w", err)
	}
	return key, csr, nil
}
