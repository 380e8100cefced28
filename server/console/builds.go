package console

import (
	"crypto/x509"
	"errors"
	"net/http"
	"net/url"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/server/store"
)

// maxSetTabs is how many fusion sets the view offers as tabs; any other
// set is reached by its fusionSet parameter.
const maxSetTabs = 200

// maxBuildsShown bounds the builds view: the newest builds of a set, each
// with its record checked against the set's CA on the page.
const maxBuildsShown = 100

// builds shows a fusion set's builds: each build certificate with its
// installs (enrolled, live, revoked), its revocation, and whether its
// certified record verifies against the set's CA. The set is picked with
// fusionSet in the URL (the first set when absent).
func (c *Console) builds(w http.ResponseWriter, r *http.Request, s *session) {
	set := r.URL.Query().Get("fusionSet")
	sets, err := c.DB.ListSets(r.Context(), "", maxSetTabs)
	if err != nil {
		c.internal(w, r, "the fusion sets", err)
		return
	}
	type tab struct {
		Label, Link string
		Current     bool
	}
	var tabs []tab
	var current *store.SetSummary
	for i := range sets {
		if set == "" {
			set = sets[i].FusionSet
		}
		if sets[i].FusionSet == set {
			current = &sets[i]
		}
		tabs = append(tabs, tab{sets[i].FusionSet, Prefix + "/builds?" + url.Values{"fusionSet": {sets[i].FusionSet}}.Encode(), sets[i].FusionSet == set})
	}
	data := map[string]any{"Title": "Builds", "Tabs": tabs, "Set": set}
	if current == nil && set != "" && certid.CheckSetID(set) == nil {
		// A set past the tabs' first page is still one URL away.
		switch one, err := c.DB.SetVersionOf(r.Context(), set, 0); {
		case err == nil:
			current = &one
		case !errors.Is(err, store.ErrNotFound):
			c.internal(w, r, "the fusion set", err)
			return
		}
	}
	if current == nil {
		if len(sets) > 0 {
			c.fail(w, r, http.StatusNotFound, "No such fusion set.")
			return
		}
		c.render(w, r, http.StatusOK, "builds", s, data)
		return
	}
	ca, caErr := pki.ParseCertificatePEM([]byte(current.CACertPEM))
	list, err := c.DB.BuildSummaries(r.Context(), set, c.Now(), maxBuildsShown)
	if err != nil {
		c.internal(w, r, "the builds", err)
		return
	}
	type row struct {
		Build, App, Serial, Profile, Issued, Expires, Status, Record string
		RecordOK                                                     bool
		Installs, Live, RevokedInstalls                              int64
		Events, Certificate                                          string
	}
	rows := make([]row, len(list))
	var installs, revoked int64
	for i, b := range list {
		installs += b.Installs
		status := b.Status(c.Now())
		if status == store.StatusRevoked {
			revoked++
			if b.RevocationReason != "" {
				status += " (" + b.RevocationReason + ")"
			}
		}
		rec, ok := recordState(b.Record, b.Profile, ca, caErr)
		ev := url.Values{"fusionSet": {set}, "build": {b.BuildID}, "range": {"7d"}}
		cert := url.Values{"fusionSet": {set}, "serial": {b.Serial}, "range": {"7d"}}
		rows[i] = row{b.BuildID, b.AppID, b.Serial, b.Profile, b.IssuedAt.UTC().Format("2006-01-02 15:04"),
			b.NotAfter.UTC().Format("2006-01-02"), status, rec, ok, b.Installs, b.LiveInstalls, b.RevokedInstalls,
			Prefix + "/events?" + ev.Encode(), Prefix + "/events?" + cert.Encode()}
	}
	data["Rows"] = rows
	data["Shown"] = len(rows)
	data["More"] = len(rows) == maxBuildsShown
	data["Installs"] = installs
	data["Revoked"] = revoked
	c.render(w, r, http.StatusOK, "builds", s, data)
}

// recordState says whether a build's certified record verifies against
// its set's CA, as `mcc certify verify` does without the bundle.
func recordState(record, profile string, ca *x509.Certificate, caErr error) (string, bool) {
	if record == "" {
		if profile == store.ProfileImported {
			return "none: issued before its CA came to this server", false
		}
		return "missing", false
	}
	if caErr != nil {
		return "cannot check: the set's CA does not parse", false
	}
	if _, err := pki.VerifyRecord([]byte(record), ca, nil); err != nil {
		return "does not verify: " + err.Error(), false
	}
	return "verifies", true
}
