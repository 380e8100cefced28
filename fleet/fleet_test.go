package fleet

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/fusion/fusiontest"
	"github.com/mccgate/mcc/internal/redistest"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/threat"
)

const (
	setID = "bank-prod"
	appID = "com.example.bank"
	// siteHost is the Caddy site address and the SNI at both gateways
	// (under client auth Caddy wants Host == SNI).
	siteHost = "mcc.localhost"
	sitePath = "/v1/balance"

	// threshold is the fail-safe threshold: three events of eventScore.
	threshold  = 30
	eventScore = 10

	// timeout bounds each request and each wait: generous, the machine
	// is small and shared.
	timeout = 60 * time.Second
)

// scoredReasons are the reasons the tests provoke, each worth eventScore,
// so that any three events cross the threshold.
var scoredReasons = []threat.Reason{
	threat.ReasonNoClientCert, threat.ReasonCertUntrusted, threat.ReasonCertExpired,
	threat.ReasonIdentityMismatch, threat.ReasonWrongKeyUsage, threat.ReasonHandshakeFailed,
}

// fleet is two gateways, Caddy and Envoy's `mcc authz`, on one fusion set
// file and one Redis.
type fleet struct {
	redis  *redistest.Server
	corpus *fusiontest.Corpus
	// rogue is a second corpus: its CA has the trusted CA's name but its
	// own key, so its certificates are CERT_UNTRUSTED and otherwise
	// perfect.
	rogue  *fusiontest.Corpus
	banFor time.Duration
	// valid is the corpus's valid certificate: every gateway allows it
	// from a client that is not banned.
	valid fusiontest.Case

	caddy *caddyGateway
	envoy *envoyGateway
	authz *authz

	lastIP atomic.Uint32
}

// newFleet starts Redis, writes the fusion set file (defense mode, events
// on, every scoredReason worth eventScore, fail-safe at threshold for
// banFor), and starts both gateways on them.
func newFleet(t *testing.T, banFor time.Duration) *fleet {
	t.Helper()
	f := &fleet{
		redis:  redistest.New(t),
		corpus: fusiontest.NewCorpus(t, setID, appID),
		rogue:  fusiontest.NewCorpus(t, setID, appID),
		banFor: banFor,
	}
	f.valid = f.corpus.Case(t, "valid")
	setFile := f.corpus.WriteSetFile(t, "fleet.yaml", func(sc *fusion.SetConfig) {
		sc.Mode, sc.ThreatEvents = string(threat.ModeDefense), true
		sc.Message = "Please update the Bank app."
		sc.Status = 403
		sc.Scores = map[string]int{}
		for _, r := range scoredReasons {
			sc.Scores[string(r)] = eventScore
		}
		sc.FailSafe = &fusion.FailSafe{
			Threshold: threshold,
			Window:    fusion.Duration(10 * time.Minute),
			Duration:  fusion.Duration(banFor),
		}
	})
	dir := t.TempDir()
	f.caddy = startCaddy(t, setFile, f.redis.URL(), filepath.Join(dir, "caddy-events.jsonl"))
	f.authz = startAuthz(t, setFile, f.redis.URL(), filepath.Join(dir, "envoy-events.jsonl"))
	f.envoy = &envoyGateway{authz: f.authz}
	return f
}

// client is one app install: an address both gateways see it come from
// (Caddy's TCP peer, Envoy's downstream address) and the device id the app
// sends.
type client struct {
	ip     string
	device string
}

func (c client) String() string { return c.ip }

// newClient returns a client no gateway has seen before. Linux routes all
// of 127/8 to the loopback interface, so Caddy's clients can dial from
// these addresses.
func (f *fleet) newClient() client {
	n := f.lastIP.Add(1)
	ip := fmt.Sprintf("127.77.%d.%d", n/250, n%250+1)
	return client{ip: ip, device: "device-" + ip}
}

// invalid returns a new certificate (or none) that the fusion set blocks
// with the given reason. Each is new, so that no certificate collects
// scores from several requests: bans are also keyed by certificate.
func (f *fleet) invalid(t *testing.T, r threat.Reason) fusiontest.Case {
	t.Helper()
	var tc fusiontest.Case
	switch r {
	case threat.ReasonNoClientCert:
		tc = fusiontest.Case{}
	case threat.ReasonCertUntrusted:
		tc = f.rogue.Issue(t, f.corpus.LeafKey, nil)
	case threat.ReasonCertExpired:
		tc = f.corpus.Issue(t, nil, func(x *x509.Certificate) {
			x.NotBefore, x.NotAfter = f.corpus.Now.AddDate(0, 0, -40), f.corpus.Now.Add(-time.Hour)
		})
	case threat.ReasonIdentityMismatch:
		tc = f.corpus.Issue(t, nil, func(x *x509.Certificate) {
			u, err := url.Parse(certid.IdentityURI(setID, appID+".evil"))
			if err != nil {
				t.Fatal(err)
			}
			x.URIs = []*url.URL{u}
		})
	case threat.ReasonWrongKeyUsage:
		tc = f.corpus.Issue(t, nil, func(x *x509.Certificate) {
			x.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		})
	default:
		t.Fatalf("no certificate for reason %s", r)
	}
	tc.Name, tc.Want = string(r), r
	return tc
}

// verdict is what a client observes of one decision, at either gateway.
type verdict struct {
	Allowed bool
	Status  int           // HTTP status of a block
	Reason  threat.Reason // reason code of a block
	// ExternalID is the block page's reference: the event's externalID.
	ExternalID string
}

func (v verdict) String() string {
	if v.Allowed {
		return "allow"
	}
	return fmt.Sprintf("block %d %s", v.Status, v.Reason)
}

// blockedFor reports whether v is the set's block page for reason r.
func (v verdict) blockedFor(r threat.Reason) bool {
	return !v.Allowed && v.Status == 403 && v.Reason == r
}

// gateway is Caddy or Envoy as a client sees it.
type gateway interface {
	// name is "caddy" or "envoy", as events say.
	name() string
	// request sends one request from c presenting tc's chain (none when
	// empty) and returns what c got. An error is a failure of the gateway
	// or the transport, never a block.
	request(ctx context.Context, c client, tc fusiontest.Case) (verdict, error)
	// events returns the threat events the gateway's sink holds so far.
	events(t *testing.T) []*threat.Event
}

// mustRequest is request for the test goroutine.
func mustRequest(t *testing.T, g gateway, c client, tc fusiontest.Case) verdict {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	v, err := g.request(ctx, c, tc)
	if err != nil {
		t.Fatalf("%s: request from %s with %q: %v", g.name(), c, tc.Name, err)
	}
	return v
}

// expectAllowed fails the test unless every gateway allows c's valid
// certificate.
func (f *fleet) expectAllowed(t *testing.T, c client, gws ...gateway) {
	t.Helper()
	for _, g := range gws {
		if v := mustRequest(t, g, c, f.valid); !v.Allowed {
			t.Fatalf("%s: client %s with a valid certificate: %v, want allow", g.name(), c, v)
		}
	}
}

// expectBlocked fails the test unless g blocks tc from c with tc.Want.
func expectBlocked(t *testing.T, g gateway, c client, tc fusiontest.Case) verdict {
	t.Helper()
	v := mustRequest(t, g, c, tc)
	if !v.blockedFor(tc.Want) {
		t.Fatalf("%s: client %s with a %s certificate: %v, want block 403 %s", g.name(), c, tc.Name, v, tc.Want)
	}
	return v
}

// waitEvent polls g's sink for the event of the block v, until timeout.
func waitEvent(t *testing.T, g gateway, v verdict) *threat.Event {
	t.Helper()
	if v.ExternalID == "" {
		t.Fatalf("%s: block %v has no reference to find its event by", g.name(), v)
	}
	deadline := time.Now().Add(timeout)
	for {
		for _, e := range g.events(t) {
			if e.ExternalID == v.ExternalID {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no event with externalID %q in the sink after %s", g.name(), v.ExternalID, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
