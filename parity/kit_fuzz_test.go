package parity

import (
	"bytes"
	"encoding/pem"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/mccgate/mcc/adapter"
	"github.com/mccgate/mcc/caddymod"
	"github.com/mccgate/mcc/envoyext"
	"github.com/mccgate/mcc/envoyext/envoytest"
	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/threat"
)

// kitCertHeaderSeeds are forwarded-certificate headers in good and bad
// forms, built around a real chain (leaf, intermediate).
func kitCertHeaderSeeds(leaf, inter []byte) []string {
	good := envoytest.XFCC([][]byte{leaf, inter})
	chainOnly := `Chain="` + url.PathEscape(string(pemOf(leaf))+string(pemOf(inter))) + `"`
	return []string{
		good,
		chainOnly,
		`Hash=00;Cert="` + envoytest.EncodePeerCertificate(leaf) + `"`, // no Chain
		good + "," + good,                         // two elements
		strings.Replace(good, "%0A", "%0A%41", 1), // an escape no proxy writes
		strings.Replace(good, "%2F", "%2f", 1),    // lower-case hex: the same byte
		strings.Replace(good, `Chain="`, `Chain="%`, 1),
		`Chain="` + envoytest.EncodePeerCertificate(inter) + `"`, // not this connection's chain
		`Cert="abc`, // unterminated
		`Chain`,     // key without a value
		`Chain="-----BEGIN%20CERTIFICATE-----%0AA===%0A-----END%20CERTIFICATE-----%0A"`, // bad base64
		"",
		strings.Repeat("a", adapter.DefaultMaxCertHeaderBytes+1),
	}
}

func pemOf(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// FuzzKitCertHeader is the differential test of the forwarded-certificate
// rule: the same x-forwarded-client-cert value goes through what Caddy's
// fusion_set handler reads from a trusted proxy (caddymod.CertsFromHeader)
// and what `mcc authz` reads next to the leaf Envoy reports
// ((*envoyext.Service).ForwardedChain), and the outcomes must agree:
//
//   - a refusal at either gateway is a refusal at the other, for the same
//     reason, except that Envoy reads only an element's Chain: an element
//     without one leaves Envoy with its own leaf, whatever its Cert says;
//   - a chain both accept is the same chain, when it starts with the leaf
//     Envoy saw (Envoy keeps its own leaf otherwise: the header describes
//     another connection).
//
// The same value as a PEM header (Caddy's pem format) and as Envoy's
// attributes.source.certificate must also read the same: Envoy accepts it
// exactly when Caddy reads one certificate from it, the same one.
func FuzzKitCertHeader(f *testing.F) {
	corpus := fusiontest.NewCorpus(f, "bank-prod", "com.example.bank")
	via := corpus.Case(f, "valid_via_intermediate").Chain
	leaf, inter := via[0], via[1]
	for _, s := range kitCertHeaderSeeds(leaf, inter) {
		f.Add(s)
	}
	f.Add(envoytest.EncodePeerCertificate(leaf))
	cfg, err := fusion.LoadFile(corpus.SetFile)
	if err != nil {
		f.Fatal(err)
	}
	svc, err := envoyext.New(envoyext.Options{Config: cfg, Node: "parity-fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	leafEnc := envoytest.EncodePeerCertificate(leaf)

	f.Fuzz(func(t *testing.T, header string) {
		// XFCC.
		caddyChain, caddyErr := caddymod.CertsFromHeader(caddymod.CertHeaderXFCC, []string{header}, adapter.CertHeaderOptions{})
		caddyReason := reasonOf(t, caddyErr)
		envoyChain, envoyReason := svc.ForwardedChain(leafEnc, []string{header})
		elem, selErr := adapter.SelectXFCC([]string{header}, adapter.CertHeaderOptions{})
		chainValue, _ := elem.Get("Chain")
		readsChain := selErr == nil && chainValue != ""
		switch {
		case caddyReason == threat.ReasonNone && envoyReason == threat.ReasonCertMalformed && oversized(caddyChain):
			// Envoy refuses a certificate over fusion.MaxCertBytes while
			// decoding; Caddy hands it on and the engine's shape check
			// refuses it with the same reason.
		case selErr != nil || readsChain:
			// Both read the same part of the header.
			if caddyReason != envoyReason {
				t.Fatalf("XFCC %q: Caddy %q (%v), Envoy %q", header, caddyReason, caddyErr, envoyReason)
			}
			if caddyReason == threat.ReasonNone {
				want := [][]byte{leaf}
				if bytes.Equal(caddyChain[0], leaf) {
					want = caddyChain
				}
				// Envoy keeps a bounded prefix of a very long chain; the
				// engine refuses either as deeper than max_chain_depth.
				if len(envoyChain) > 1 && len(envoyChain) < len(want) {
					want = want[:len(envoyChain)]
				}
				if !sameChain(envoyChain, want) {
					t.Fatalf("XFCC %q: Caddy read %d certificates, Envoy kept %d that differ", header, len(caddyChain), len(envoyChain))
				}
			}
		default:
			// No Chain: Envoy keeps its leaf and refuses nothing.
			if envoyReason != threat.ReasonNone || !sameChain(envoyChain, [][]byte{leaf}) {
				t.Fatalf("XFCC %q without Chain: Envoy %q with %d certificates", header, envoyReason, len(envoyChain))
			}
		}

		// PEM.
		if len(header) > envoyext.DefaultMaxCertificateBytes {
			return // Envoy's own cap on the leaf, checked before reading it
		}
		pemChain, pemErr := caddymod.CertsFromHeader(caddymod.CertHeaderPEM, []string{header}, adapter.CertHeaderOptions{})
		srcChain, srcReason := svc.ForwardedChain(header, nil)
		caddyOne := pemErr == nil && len(pemChain) == 1
		if caddyOne != (srcReason == threat.ReasonNone) {
			t.Fatalf("PEM %q: Caddy %d certificates (%v), Envoy %q", header, len(pemChain), pemErr, srcReason)
		}
		if caddyOne && !sameChain(srcChain, pemChain) {
			t.Fatalf("PEM %q: the gateways read different certificates", header)
		}
		if pemErr != nil && srcReason != reasonOf(t, pemErr) {
			t.Fatalf("PEM %q: Caddy %q (%v), Envoy %q", header, reasonOf(t, pemErr), pemErr, srcReason)
		}
	})
}

// TestKitCertHeaderSeeds runs the fuzz target's relation on its seeds in a
// plain `go test`, and checks that the seeds reach both sides of it: some
// refused, some read, some read only by Caddy.
func TestKitCertHeaderSeeds(t *testing.T) {
	corpus := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	via := corpus.Case(t, "valid_via_intermediate").Chain
	var refused, read int
	for _, s := range kitCertHeaderSeeds(via[0], via[1]) {
		_, err := caddymod.CertsFromHeader(caddymod.CertHeaderXFCC, []string{s}, adapter.CertHeaderOptions{})
		if err != nil {
			refused++
		} else {
			read++
		}
	}
	if refused < 5 || read < 3 {
		t.Fatalf("seeds: %d refused, %d read; the fuzz target needs both", refused, read)
	}
}

func reasonOf(t *testing.T, err error) threat.Reason {
	t.Helper()
	if err == nil {
		return threat.ReasonNone
	}
	var ce *adapter.CertHeaderError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not an *adapter.CertHeaderError", err)
	}
	return ce.Reason
}

// oversized reports whether a certificate is over the engine's size cap.
func oversized(chain [][]byte) bool {
	for _, der := range chain {
		if len(der) > fusion.MaxCertBytes {
			return true
		}
	}
	return false
}

func sameChain(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
