package console

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/server/auth"
	"github.com/mccgate/mcc/server/store"
	"github.com/mccgate/mcc/threat"
)

// bansTimeout bounds one read or lift in the shared store: the page
// answers that the store is unreachable rather than hang.
const bansTimeout = 5 * time.Second

// bans lists the live fail-safe bans of the gateways' shared store, every
// fusion set or the one in fusionSet, with their subject, expiry and
// score. A session whose token has the admin scope also gets a Lift
// button per ban.
func (c *Console) bans(w http.ResponseWriter, r *http.Request, s *session) {
	set := r.URL.Query().Get("fusionSet")
	if set != "" && certid.CheckSetID(set) != nil {
		c.fail(w, r, http.StatusBadRequest, "fusionSet is not a fusion set id.")
		return
	}
	data := map[string]any{"Title": "Bans", "Set": set, "Configured": c.Bans != nil,
		"CanLift": s.caller.Has(auth.ScopeAdmin), "Lifted": r.URL.Query().Get("lifted")}
	if c.Bans == nil {
		c.render(w, r, http.StatusOK, "bans", s, data)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), bansTimeout)
	defer cancel()
	list, err := c.Bans.Bans(ctx, set)
	if err != nil {
		c.Log.Warn("console: reading the bans", zap.Error(err))
		data["Unreachable"] = true
		c.render(w, r, http.StatusServiceUnavailable, "bans", s, data)
		return
	}
	type row struct {
		Set, Kind, Value, Until, Remaining, Events string
		Score                                      int
	}
	now := c.Now()
	rows := make([]row, len(list))
	for i, b := range list {
		rows[i] = row{Set: b.Set, Kind: b.Kind.String(), Value: b.Value, Until: b.Until.UTC().Format("2006-01-02 15:04:05"),
			Remaining: b.Until.Sub(now).Round(time.Second).String(), Score: b.Score}
		// The subject's events: addresses and devices are event filters.
		v := url.Values{"fusionSet": {b.Set}, "range": {"24h"}}
		switch b.Kind {
		case threat.SubjectAddress:
			// A single address is an event filter; a banned prefix is not.
			if p, ok := threat.ParseAddressValue(b.Value); ok && p.Bits() == p.Addr().BitLen() {
				v.Set("clientIP", p.Addr().String())
				rows[i].Events = Prefix + "/events?" + v.Encode()
			}
		case threat.SubjectDevice:
			v.Set("deviceId", b.Value)
			rows[i].Events = Prefix + "/events?" + v.Encode()
		}
	}
	data["Rows"] = rows
	c.render(w, r, http.StatusOK, "bans", s, data)
}

// liftBan lifts one ban in the shared store (admin scope): the gateways
// sharing the store stop refusing the subject at their next request, and
// the lift is in the audit log with the token's name.
func (c *Console) liftBan(w http.ResponseWriter, r *http.Request, s *session) {
	if !s.caller.Has(auth.ScopeAdmin) {
		c.fail(w, r, http.StatusForbidden, "Lifting a ban takes a token with the admin scope.")
		return
	}
	if c.Bans == nil {
		c.fail(w, r, http.StatusNotFound, "No shared store is configured (mcc server --ban-store).")
		return
	}
	set, kindName, value := r.PostForm.Get("fusionSet"), r.PostForm.Get("kind"), r.PostForm.Get("value")
	kind, kerr := threat.ParseSubjectKind(kindName)
	if certid.CheckSetID(set) != nil || kerr != nil || value == "" || len(value) > maxFilterBytes {
		c.fail(w, r, http.StatusBadRequest, "The ban to lift is not named by a fusion set, a subject kind and a value.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), bansTimeout)
	defer cancel()
	lifted, err := c.Bans.Lift(ctx, set, kind, value)
	if err != nil {
		c.Log.Warn("console: lifting a ban", zap.Error(err))
		c.fail(w, r, http.StatusServiceUnavailable, "The shared store could not be reached; nothing was lifted.")
		return
	}
	if len(lifted) > 0 {
		err = c.DB.Tx(r.Context(), func(tx *store.Tx) error {
			_, err := tx.AppendAudit(r.Context(), store.AuditEntry{Time: c.Now(), Actor: s.caller.Actor(), Action: store.AuditBanLift,
				Subject: "fusion-set/" + set, Detail: map[string]any{"kind": kind.String(), "value": value, "lifted": len(lifted)}})
			return err
		})
		if err != nil {
			// The ban is lifted already; the log line keeps the trace.
			c.Log.Error("console: auditing a lifted ban", zap.String("fusionSet", set), zap.String("kind", kind.String()), zap.Error(err))
		}
	}
	v := url.Values{"fusionSet": {set}, "lifted": {value}}
	http.Redirect(w, r, Prefix+"/bans?"+v.Encode(), http.StatusSeeOther)
}
