package api

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/internal/safetext"
	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/attestation"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
	"github.com/mccgate/mcc/threat"
)

// Enrollment trades the build certificate shipped in an app for an
// install certificate: short-lived, for a key the device made, naming the
// install. The app calls these routes over mTLS on the enrollment
// listener; the certificate it presents is checked by the fusion set's
// own rules (the same engine the gateways run), by this server's records
// (a revoked build stops enrolling at once), and by the set's enrollment
// limits and attestation policy.
func (a *API) routesEnroll() {
	a.route("POST", "/v1/fusion-sets/{set}/enroll/challenge", auth.ScopeClientCert, a.enrollChallenge)
	a.route("POST", "/v1/fusion-sets/{set}/enroll", auth.ScopeClientCert, a.enroll)
	a.route("POST", "/v1/fusion-sets/{set}/renew", auth.ScopeClientCert, a.renew)
}

// EnrollRoutes are the path patterns of the enrollment listener: the
// only routes it serves.
func EnrollRoutes() []string {
	var out []string
	for _, r := range Routes() {
		if r.Scope == auth.ScopeClientCert {
			out = append(out, r.Pattern)
		}
	}
	return out
}

// GatewayServer is the gateway key of the events enrollment stores.
const GatewayServer = "server"

// challengeStep is the life of an attestation challenge: one is valid in
// the step it was made in and the next, so at least challengeStep.
const challengeStep = 5 * time.Minute

// Device context values bound what an enrollment stores per key.
const (
	maxDeviceKeys     = 16
	maxDeviceValueLen = 256
)

type enrollRequest struct {
	// CSR is a PKCS #10 request, PEM or base64 DER, for the key the device
	// made (ECDSA P-256).
	CSR       string `json:"csr"`
	InstallID string `json:"installId"`
	// Device holds the event schema's device context keys (deviceID, ...).
	Device      map[string]string `json:"device,omitempty"`
	Attestation *attestationJSON  `json:"attestation,omitempty"`
}

type attestationJSON struct {
	Format string `json:"format"`
	// Data is the evidence, base64: for android-key the certificate chain
	// KeyStore returns, leaf first, concatenated DER.
	Data string `json:"data"`
	// Challenge is what /enroll/challenge returned, base64url.
	Challenge string `json:"challenge"`
}

type renewRequest struct {
	// CSR is optional: a new key. Without it the install keeps its key
	// (the TLS handshake proved the device holds it).
	CSR string `json:"csr,omitempty"`
}

type challengeRequest struct {
	InstallID string `json:"installId"`
}

type challengeResponse struct {
	Challenge string    `json:"challenge"`
	ExpiresAt time.Time `json:"expiresAt"`
}

type installCertJSON struct {
	Serial      string    `json:"serial"`
	InstallID   string    `json:"installId"`
	Certificate string    `json:"certificate"` // PEM
	CA          string    `json:"ca"`          // PEM: the chain's anchor
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	// RenewAfter is when the app should renew: two thirds into the
	// lifetime, so a device offline for a while still renews in time.
	RenewAfter  time.Time `json:"renewAfter"`
	Attestation *string   `json:"attestation,omitempty"` // the verified security level
}

// presented is the client certificate of an enrollment request, checked.
type presented struct {
	set   *publishedSet
	chain [][]byte
	leaf  *x509.Certificate
	build certid.BuildInfo
	rec   store.Certificate // this server's record of the leaf
	ip    string            // the client's address as connected
	addr  string            // ip by the set's scoring prefixes
	req   *fusion.Request   // the request as the engine saw it (report)
	// buildNotAfter is when the build certificate behind the presented
	// one ends: install certificates never outlive it.
	buildNotAfter time.Time
}

// checkPresented runs the set's rules on the client certificate for
// purpose, then this server's records: the certificate must be one this
// server issued and has not revoked. A refusal is stored as a threat
// event and answered 403 with the reason code.
func (a *API) checkPresented(ctx context.Context, r *http.Request, requestID, set string, purpose fusion.Purpose, device map[string]string) (*presented, error) {
	ps, err := a.publishedSet(ctx, set)
	if err != nil {
		return nil, err
	}
	p := &presented{set: ps, ip: remoteIP(r)}
	for _, c := range r.TLS.PeerCertificates {
		p.chain = append(p.chain, c.Raw)
	}
	p.leaf = r.TLS.PeerCertificates[0]
	pol := ps.set.FailSafe
	p.addr = threat.AddressKey(p.ip, pol.IPv4Prefix, pol.IPv6Prefix)
	p.req = &fusion.Request{
		PeerCertificates: p.chain, ClientIP: p.ip, SNI: r.TLS.ServerName, Host: r.Host, Method: r.Method,
		Path: r.URL.Path, Header: deviceHeaders(ps.set, device), RequestID: requestID, Gateway: GatewayServer,
		Purpose: purpose,
	}
	d := ps.guard.Evaluate(ctx, p.req)
	if d.Action == fusion.Block || (d.Reason != "" && d.Reason != threat.ReasonRateAnomaly) {
		a.storeEvent(ctx, d.Event)
		return nil, refused(d.Reason, reasonDetail(d))
	}
	info, ok, err := certid.ParseBuildInfo(p.leaf)
	if !ok || err != nil {
		return nil, refused(threat.ReasonCertMalformed, "the certificate carries no build metadata")
	}
	p.build = info
	serial := pki.FormatSerial(p.leaf.SerialNumber)
	p.rec, err = a.DB.Certificate(ctx, serial)
	switch {
	case errors.Is(err, store.ErrNotFound) && purpose == fusion.PurposeEnroll:
		// A build certificate the set's CA signed before the CA was
		// imported (`mcc server ca import`): genuine, since the set's rules
		// verified it. It is recorded now, so it can be revoked through
		// the API and its enrollments counted like any other.
		if p.rec, err = a.recordBuild(ctx, p, serial); err != nil {
			return nil, err
		}
	case errors.Is(err, store.ErrNotFound):
		return nil, refused(threat.ReasonCertUntrusted, "this server did not issue the certificate "+serial)
	case err != nil:
		return nil, err
	case p.rec.FusionSet != set:
		return nil, refused(threat.ReasonIdentityMismatch, "the certificate belongs to another fusion set")
	}
	if !p.rec.RevokedAt.IsZero() {
		return nil, a.refuseRevoked(ctx, p, serial)
	}
	p.buildNotAfter = p.leaf.NotAfter
	if p.rec.Kind == store.KindInstall {
		b, err := a.DB.Certificate(ctx, p.rec.BuildSerial)
		if err != nil {
			return nil, fmt.Errorf("reading build certificate %s of install %s: %w", p.rec.BuildSerial, serial, err)
		}
		if !b.RevokedAt.IsZero() {
			return nil, a.refuseRevoked(ctx, p, b.Serial)
		}
		// An expired build is retired: its installs stop renewing.
		if !a.Now().Before(b.NotAfter) {
			detail := "the build certificate " + b.Serial + " this install enrolled with expired at " + b.NotAfter.UTC().Format(time.RFC3339)
			a.report(ctx, p, threat.ReasonCertExpired, map[string]any{"error": detail, "serial": b.Serial})
			return nil, refused(threat.ReasonCertExpired, detail)
		}
		p.buildNotAfter = b.NotAfter
	}
	return p, nil
}

// recordBuild stores a build certificate first seen at enrollment (see
// checkPresented) and returns its row; a concurrent first enrollment that
// stored it first is read back.
func (a *API) recordBuild(ctx context.Context, p *presented, serial string) (store.Certificate, error) {
	sum := sha256.Sum256(p.leaf.Raw)
	c := store.Certificate{
		Serial: serial, SHA256: hex.EncodeToString(sum[:]), FusionSet: p.set.set.ID, AppID: p.set.appID, BuildID: p.build.ID,
		Kind: store.KindBuild, Profile: store.ProfileImported, NotBefore: p.leaf.NotBefore, NotAfter: p.leaf.NotAfter,
		IssuedAt: a.Now().UTC(), IssuedBy: "first-enrollment",
		CertPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.leaf.Raw})),
	}
	err := a.DB.Tx(ctx, func(tx *store.Tx) error { return tx.InsertCertificate(ctx, c) })
	if err != nil && store.IsUniqueViolation(err) {
		return a.DB.Certificate(ctx, serial)
	}
	if err != nil {
		return store.Certificate{}, err
	}
	a.Log.Info("build certificate recorded at its first enrollment", zap.String("fusionSet", c.FusionSet),
		zap.String("serial", serial), zap.String("build", c.BuildID))
	return c, nil
}

// refuseRevoked answers a certificate (or the build of an install) that
// this server revoked. The gateways learn of a revocation through the
// CRL a few seconds later; enrollment knows at once.
func (a *API) refuseRevoked(ctx context.Context, p *presented, serial string) error {
	detail := "the certificate " + serial + " is revoked"
	if serial != pki.FormatSerial(p.leaf.SerialNumber) {
		detail = "the build certificate " + serial + " this install enrolled with is revoked"
	}
	a.report(ctx, p, threat.ReasonCertRevoked, map[string]any{"error": detail, "serial": serial})
	return refused(threat.ReasonCertRevoked, detail)
}

// refused is a 403 carrying the reason code.
func refused(reason threat.Reason, detail string) *Problem {
	return &Problem{Name: "forbidden", Status: http.StatusForbidden, Detail: detail,
		Extra: map[string]any{"reasonCode": string(reason)}}
}

func reasonDetail(d fusion.Decision) string {
	if d.Event != nil {
		if msg, ok := d.Event.ReasonData["error"].(string); ok {
			return string(d.Reason) + ": " + msg
		}
	}
	return string(d.Reason)
}

// enrollChallenge hands out the challenge an attestation must carry. It
// is a MAC (under the KEK) of the set, the presented build certificate,
// the install id and the time step: stateless, the same at every
// instance, and useless to another certificate or install.
func (a *API) enrollChallenge(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	set, err := pathSet(r)
	if err != nil {
		return err
	}
	var req challengeRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if err := certid.CheckInstallID(req.InstallID); err != nil {
		return invalidField("installId", err.Error())
	}
	p, err := a.checkPresented(r.Context(), r, w.Header().Get("X-Request-Id"), set, fusion.PurposeEnroll, nil)
	if err != nil {
		return err
	}
	step := a.Now().Unix() / int64(challengeStep/time.Second)
	return writeJSON(w, http.StatusOK, challengeResponse{
		Challenge: base64.RawURLEncoding.EncodeToString(a.challenge(set, p.leaf, req.InstallID, step)),
		ExpiresAt: time.Unix((step+2)*int64(challengeStep/time.Second), 0).UTC(),
	})
}

func (a *API) challenge(set string, leaf *x509.Certificate, installID string, step int64) []byte {
	sum := sha256.Sum256(leaf.Raw)
	var b []byte
	b = append(b, set...)
	b = append(b, 0)
	b = append(b, sum[:]...)
	b = append(b, installID...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(step))
	return a.Keys.MAC("mcc-enroll-challenge/v1", b)
}

// checkChallenge returns the challenge sent when it is one this server
// made for this certificate and install in this step or the previous one.
func (a *API) checkChallenge(set string, leaf *x509.Certificate, installID, sent string) ([]byte, bool) {
	got, err := base64.RawURLEncoding.DecodeString(sent)
	if err != nil || len(got) != sha256.Size {
		return nil, false
	}
	step := a.Now().Unix() / int64(challengeStep/time.Second)
	for _, s := range []int64{step, step - 1} {
		if subtle.ConstantTimeCompare(got, a.challenge(set, leaf, installID, s)) == 1 {
			return got, true
		}
	}
	return nil, false
}

// enroll issues an install certificate for a build certificate.
func (a *API) enroll(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	set, err := pathSet(r)
	if err != nil {
		return err
	}
	var req enrollRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	csr, errs := parseInstallCSR(req.CSR, "csr", true)
	if err := certid.CheckInstallID(req.InstallID); err != nil {
		errs = append(errs, FieldError{Field: "installId", Detail: err.Error()})
	}
	errs = append(errs, checkDevice(req.Device)...)
	if len(errs) > 0 {
		return invalid("the enrollment request is invalid", errs...)
	}
	ctx := r.Context()
	p, err := a.checkPresented(ctx, r, w.Header().Get("X-Request-Id"), set, fusion.PurposeEnroll, req.Device)
	if err != nil {
		return err
	}
	pol := p.set.set.Installs
	now := a.Now().UTC()
	// A cheap look first: a request over a limit costs no attestation
	// check and no signature. The locked count below decides.
	n, err := a.DB.CountEnrollments(ctx, set, p.rec.Serial, p.addr, now.Add(-pol.EnrollWindow))
	if err != nil {
		return err
	}
	if over := enrollOver(pol, n); over != nil {
		return a.refuseOverLimit(ctx, p, over)
	}
	res, err := a.checkAttestation(p, set, req, csr.PublicKey)
	if err != nil {
		return err
	}
	ca, err := a.Authorities.CA(ctx, set)
	if err != nil {
		return err
	}
	iss, err := ca.IssueInstall(pki.InstallRequest{ParsedCSR: csr, FusionSet: set, AppID: p.set.appID,
		Build: p.build, InstallID: req.InstallID, ValidFor: pol.Lifetime, Now: now, NotAfterMax: p.buildNotAfter})
	if err != nil {
		return invalidField("csr", err.Error())
	}
	var over *enrollLimit
	err = a.DB.Tx(ctx, func(tx *store.Tx) error {
		over = nil
		if err := tx.LockEnrollment(ctx, set, p.rec.Serial, p.addr); err != nil {
			return err
		}
		n, err := tx.CountEnrollments(ctx, set, p.rec.Serial, p.addr, now.Add(-pol.EnrollWindow))
		if err != nil {
			return err
		}
		if over = enrollOver(pol, n); over != nil {
			return nil
		}
		if err := checkInstallKey(ctx, tx, set, req.InstallID, csr.PublicKey, now); err != nil {
			return err
		}
		return a.insertInstall(ctx, tx, p, iss, req.InstallID, "", now)
	})
	if rm := (*revokedMeanwhile)(nil); errors.As(err, &rm) {
		return a.refuseRevoked(ctx, p, rm.serial)
	}
	if err != nil {
		return err
	}
	if over != nil {
		return a.refuseOverLimit(ctx, p, over)
	}
	a.Log.Info("install enrolled", zap.String("fusionSet", set), zap.String("serial", pki.FormatSerial(iss.Cert.SerialNumber)),
		zap.String("build", p.build.ID), zap.String("installId", req.InstallID))
	return writeJSON(w, http.StatusCreated, installJSON(iss, ca, req.InstallID, res))
}

// renew issues the next install certificate for a valid one, from
// halfway through its lifetime. Each install certificate renews once: the
// same key asking again gets the same answer (a retry), another key is a
// copy forking the install, refused, reported and revoked (refuseFork).
func (a *API) renew(w http.ResponseWriter, r *http.Request, _ *auth.Caller) error {
	set, err := pathSet(r)
	if err != nil {
		return err
	}
	var req renewRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	csr, errs := parseInstallCSR(req.CSR, "csr", false)
	if len(errs) > 0 {
		return invalid("the renewal request is invalid", errs...)
	}
	ctx := r.Context()
	p, err := a.checkPresented(ctx, r, w.Header().Get("X-Request-Id"), set, fusion.PurposeRenew, nil)
	if err != nil {
		return err
	}
	if from := renewFrom(p.leaf); a.Now().Before(from) {
		// Renewing early would let one enrollment chain into many live
		// certificates (each renewal may bring a new key): from halfway
		// on, at most two certificates of an install are ever valid.
		wait := from.Sub(a.Now())
		return &Problem{Name: "conflict", Status: http.StatusConflict,
			Detail:     "too early: this install certificate renews from " + from.UTC().Format(time.RFC3339) + " (halfway through its lifetime)",
			Extra:      map[string]any{"renewFrom": from.UTC()},
			retryAfter: strconv.Itoa(int((wait + time.Second - 1) / time.Second))}
	}
	in := pki.InstallRequest{FusionSet: set, AppID: p.set.appID, InstallID: p.build.InstallID,
		ValidFor: p.set.set.Installs.Lifetime, Now: a.Now().UTC(), NotAfterMax: p.buildNotAfter}
	in.Build = p.build
	in.Build.Kind, in.Build.InstallID = certid.KindBuild, ""
	if csr != nil {
		in.ParsedCSR = csr
	} else if key, ok := p.leaf.PublicKey.(*ecdsa.PublicKey); ok {
		in.PublicKey = key
	} else {
		return invalidField("csr", "the current key is not ECDSA P-256: send a CSR for a new key")
	}
	ca, err := a.Authorities.CA(ctx, set)
	if err != nil {
		return err
	}
	iss, err := ca.IssueInstall(in)
	if err != nil {
		return invalidField("csr", err.Error())
	}
	err = a.DB.Tx(ctx, func(tx *store.Tx) error {
		return a.insertInstall(ctx, tx, p, iss, in.InstallID, p.rec.Serial, in.Now)
	})
	if errors.Is(err, store.ErrRenewed) {
		return a.renewedAlready(ctx, w, p, ca, in)
	}
	if rm := (*revokedMeanwhile)(nil); errors.As(err, &rm) {
		return a.refuseRevoked(ctx, p, rm.serial)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, installJSON(iss, ca, in.InstallID, nil))
}

// renewFrom is when an install certificate may renew: halfway through
// its lifetime. The renewAfter an app is told (two thirds) leaves room for
// a device clock that runs ahead.
func renewFrom(leaf *x509.Certificate) time.Time {
	return leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
}

// renewedAlready answers a renewal of a certificate that renewed before.
// The same key asking again is a retry (the answer was lost): it gets the
// certificate the first renewal issued, 200, and nothing new exists. A
// request for another key is a fork: refuseFork.
func (a *API) renewedAlready(ctx context.Context, w http.ResponseWriter, p *presented, ca *pki.CA, in pki.InstallRequest) error {
	var key crypto.PublicKey = in.PublicKey
	if in.ParsedCSR != nil {
		key = in.ParsedCSR.PublicKey
	}
	next, err := a.DB.RenewalOf(ctx, p.rec.Serial)
	if err != nil {
		return err
	}
	cert, err := pki.ParseCertificatePEM([]byte(next.CertPEM))
	if err != nil {
		return fmt.Errorf("install certificate %s: %w", next.Serial, err)
	}
	held, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !held.Equal(key) {
		return a.refuseFork(ctx, p)
	}
	if next.RevokedAt.IsZero() {
		return writeJSON(w, http.StatusOK, installJSON(&pki.InstallCert{Cert: cert, DER: cert.Raw, PEM: []byte(next.CertPEM)}, ca, in.InstallID, nil))
	}
	// The same device retrying, but what the first renewal issued has
	// been revoked since (by serial, say): that revocation is the answer,
	// not a fork; the device enrolls again with its build certificate.
	detail := "the certificate " + next.Serial + " this renewal issued is revoked: enroll again"
	a.report(ctx, p, threat.ReasonCertRevoked, map[string]any{"error": detail, "serial": p.rec.Serial, "renewedTo": next.Serial})
	return refused(threat.ReasonCertRevoked, detail)
}

// refuseFork answers the second renewal of one install certificate: two
// holders of the same key, so one is a copy. Both branches lose: every
// live certificate of the install is revoked (the app enrolls again with
// its build certificate, under the enrollment limits), and the event
// names the install.
func (a *API) refuseFork(ctx context.Context, p *presented) error {
	installID, set := p.build.InstallID, p.rec.FusionSet
	var res revocationResult
	err := a.DB.Tx(ctx, func(tx *store.Tx) error {
		res = revocationResult{}
		live, err := tx.LiveInstallCertificates(ctx, set, installID, a.Now())
		if err != nil {
			return err
		}
		return a.revokeIn(ctx, tx, &auth.Caller{Service: "enrollment"}, live, pki.ReasonName(1), &res)
	})
	if err != nil {
		return fmt.Errorf("revoking the forked install %s of %s: %w", installID, set, err)
	}
	a.report(ctx, p, threat.ReasonRateAnomaly, map[string]any{
		"error": "an install certificate was renewed twice: one of the two is a copy", "kind": "renewal",
		"serial": p.rec.Serial, "installId": installID, "revoked": res.Revoked})
	a.Log.Warn("install forked: its certificates are revoked", zap.String("fusionSet", set),
		zap.String("installId", installID), zap.Strings("revoked", res.Revoked))
	return &Problem{Name: "conflict", Status: http.StatusConflict,
		Detail: "this install certificate was renewed already, so a copy of it exists: the install's certificates are revoked; enroll again",
		Extra:  map[string]any{"reasonCode": string(threat.ReasonRateAnomaly)}}
}

// checkInstallKey refuses an install id that a live certificate holds for
// another key: an install id names one key, so a second device (or a
// copied app data folder) cannot take over an install's name and events.
func checkInstallKey(ctx context.Context, tx *store.Tx, set, installID string, key any, now time.Time) error {
	live, err := tx.LiveInstallCertificates(ctx, set, installID, now)
	if err != nil {
		return err
	}
	for _, c := range live {
		cert, err := pki.ParseCertificatePEM([]byte(c.CertPEM))
		if err != nil {
			return fmt.Errorf("install certificate %s: %w", c.Serial, err)
		}
		if held, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !held.Equal(key) {
			return &Problem{Name: "conflict", Status: http.StatusConflict,
				Detail: "the installId is held by another key until " + c.NotAfter.UTC().Format(time.RFC3339) + ": make a new install id with the new key",
				Extra:  map[string]any{"field": "installId"}}
		}
	}
	return nil
}

// insertInstall stores an issued install certificate and its enrollment
// row (renews names the certificate a renewal replaces).
func (a *API) insertInstall(ctx context.Context, tx *store.Tx, p *presented, iss *pki.InstallCert, installID, renews string, now time.Time) error {
	serial := pki.FormatSerial(iss.Cert.SerialNumber)
	buildSerial := p.rec.Serial
	if p.rec.Kind == store.KindInstall {
		buildSerial = p.rec.BuildSerial
	}
	// Read again in the transaction: a revocation that committed after
	// checkPresented read the rows must not be outrun by this issuance.
	now2, err := tx.CertificatesBySerial(ctx, []string{p.rec.Serial, buildSerial})
	if err != nil {
		return err
	}
	for _, c := range now2 {
		if !c.RevokedAt.IsZero() {
			return &revokedMeanwhile{serial: c.Serial}
		}
	}
	sum := sha256.Sum256(iss.DER)
	err = tx.InsertCertificate(ctx, store.Certificate{
		Serial: serial, SHA256: hex.EncodeToString(sum[:]), FusionSet: p.rec.FusionSet, AppID: p.set.appID,
		BuildID: iss.Build.ID, Kind: store.KindInstall, Profile: store.ProfileDevice, NotBefore: iss.Cert.NotBefore,
		NotAfter: iss.Cert.NotAfter, IssuedAt: now, IssuedBy: "install:" + installID, CertPEM: string(iss.PEM),
		InstallID: installID, BuildSerial: buildSerial,
	})
	if err != nil {
		return err
	}
	return tx.InsertEnrollment(ctx, store.Enrollment{Serial: serial, FusionSet: p.rec.FusionSet, BuildSerial: buildSerial,
		Address: p.addr, InstallID: installID, Renews: renews, Time: now})
}

// revokedMeanwhile is a presented certificate (or its build) revoked
// between checkPresented and the issuing transaction.
type revokedMeanwhile struct{ serial string }

func (e *revokedMeanwhile) Error() string {
	return "certificate " + e.serial + " was revoked meanwhile"
}

// enrollLimit is an enrollment limit that was reached.
type enrollLimit struct {
	field      string // installs.enrollment.max_per_build | max_per_address
	count, max int
}

func enrollOver(pol fusion.InstallPolicy, n store.EnrollmentCounts) *enrollLimit {
	switch {
	case n.PerBuild >= pol.EnrollPerBuild:
		return &enrollLimit{"max_per_build", n.PerBuild, pol.EnrollPerBuild}
	case n.PerAddress >= pol.EnrollPerAddr:
		return &enrollLimit{"max_per_address", n.PerAddress, pol.EnrollPerAddr}
	}
	return nil
}

// refuseOverLimit stores the RATE_ANOMALY event of an enrollment past a
// limit and answers 429 until the window moves on. A build certificate
// over max_per_build is the sign of a bundle pulled out of the app: the
// event names it, and revoking the build stops it for good.
func (a *API) refuseOverLimit(ctx context.Context, p *presented, l *enrollLimit) error {
	pol := p.set.set.Installs
	a.report(ctx, p, threat.ReasonRateAnomaly, map[string]any{
		"error": "enrollment limit reached", "kind": "enrollment", "limit": "installs.enrollment." + l.field,
		"enrollments": l.count, "max": l.max, "window": pol.EnrollWindow.String(),
		"buildSerial": p.rec.Serial, "address": p.addr,
	})
	retry := int(pol.EnrollWindow / time.Second / 10)
	return &Problem{Name: "rate-limited", Status: http.StatusTooManyRequests,
		Detail:     fmt.Sprintf("the enrollment limit installs.enrollment.%s (%d per %s) is reached", l.field, l.max, pol.EnrollWindow),
		Extra:      map[string]any{"reasonCode": string(threat.ReasonRateAnomaly)},
		retryAfter: strconv.Itoa(max(retry, 1))}
}

// checkAttestation applies the set's attestation policy to the request.
func (a *API) checkAttestation(p *presented, set string, req enrollRequest, key any) (*attestation.Result, error) {
	pol := p.set.set.Installs.Attestation
	var ev *attestation.Evidence
	var challenge []byte
	if at := req.Attestation; at != nil {
		data, err := base64.StdEncoding.DecodeString(at.Data)
		if err != nil {
			return nil, invalidField("attestation.data", "is not base64")
		}
		ev = &attestation.Evidence{Format: attestation.Format(at.Format), Data: data}
		if pol.Mode == attestation.ModeRequired || pol.Mode == attestation.ModeOptional {
			c, ok := a.checkChallenge(set, p.leaf, req.InstallID, at.Challenge)
			if !ok {
				return nil, &Problem{Name: "forbidden", Status: http.StatusForbidden,
					Detail: "the attestation challenge is not one this server made for this certificate and install, or it expired: ask /enroll/challenge again",
					Extra:  map[string]any{"attestation": "challenge"}}
			}
			challenge = c
		}
	}
	res, err := pol.Check(a.Verifiers, ev, challenge, key)
	if err != nil {
		kind := "refused"
		var ae *attestation.Error
		if errors.As(err, &ae) {
			kind = string(ae.Kind)
		}
		return nil, &Problem{Name: "forbidden", Status: http.StatusForbidden, Detail: "attestation: " + err.Error(),
			Extra: map[string]any{"attestation": kind}}
	}
	return res, nil
}

// parseInstallCSR reads a CSR sent as PEM or base64 DER; required says
// whether an empty one is an error.
func parseInstallCSR(s, field string, required bool) (*x509.CertificateRequest, []FieldError) {
	s = strings.TrimSpace(s)
	if s == "" {
		if required {
			return nil, []FieldError{{Field: field, Detail: "is required: a PKCS #10 request (PEM or base64 DER) for the key the device made"}}
		}
		return nil, nil
	}
	var der []byte
	if strings.HasPrefix(s, "-----BEGIN") {
		b, _ := pem.Decode([]byte(s))
		if b == nil || b.Type != "CERTIFICATE REQUEST" {
			return nil, []FieldError{{Field: field, Detail: "is not a PEM CERTIFICATE REQUEST"}}
		}
		der = b.Bytes
	} else {
		var err error
		if der, err = base64.StdEncoding.DecodeString(s); err != nil {
			return nil, []FieldError{{Field: field, Detail: "is neither PEM nor base64 DER"}}
		}
	}
	if len(der) > pki.MaxInstallCSRSize {
		return nil, []FieldError{{Field: field, Detail: fmt.Sprintf("is larger than %d bytes", pki.MaxInstallCSRSize)}}
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, []FieldError{{Field: field, Detail: "does not parse: " + truncateDetail(err.Error())}}
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, []FieldError{{Field: field, Detail: "signature does not verify: the CSR must be signed by its own key"}}
	}
	return csr, nil
}

// checkDevice bounds the device context an enrollment sends: known keys,
// short printable values. Printable is unicode.IsPrint: no controls, no
// format characters (bidi overrides, zero-width joiners) and no line or
// paragraph separators, which would let a value disguise itself in the
// console, a log line or a support ticket.
func checkDevice(dev map[string]string) []FieldError {
	var errs []FieldError
	if len(dev) > maxDeviceKeys {
		return []FieldError{{Field: "device", Detail: fmt.Sprintf("at most %d keys", maxDeviceKeys)}}
	}
	for k, v := range dev {
		field := "device." + truncateDetail(k)
		switch {
		case !threat.IsDeviceKey(k):
			errs = append(errs, FieldError{Field: field, Detail: "is not a device context key of the event schema"})
		case len(v) > maxDeviceValueLen || !safetext.Printable(v):
			errs = append(errs, FieldError{Field: field, Detail: fmt.Sprintf("must be printable text of at most %d bytes", maxDeviceValueLen)})
		}
	}
	return errs
}

// deviceHeaders turns the device context into the request headers the
// set maps, so the engine reads it the way a gateway would.
func deviceHeaders(s *fusion.Set, dev map[string]string) http.Header {
	if len(dev) == 0 {
		return nil
	}
	h := http.Header{}
	for k, v := range dev {
		if name := s.DeviceHeaders[k]; name != "" {
			h.Set(name, v)
		}
	}
	return h
}

func installJSON(iss *pki.InstallCert, ca *pki.CA, installID string, res *attestation.Result) installCertJSON {
	c := iss.Cert
	out := installCertJSON{
		Serial: pki.FormatSerial(c.SerialNumber), InstallID: installID, Certificate: string(iss.PEM), CA: string(ca.CertPEM()),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		RenewAfter: c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3).UTC(),
	}
	if res != nil {
		level := string(res.SecurityLevel)
		out.Attestation = &level
	}
	return out
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func truncateDetail(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
