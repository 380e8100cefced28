package fusion

import (
	"context"
	"time"

	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/threat"
)

// CloneDetection is a set's clone_detection block: a certificate that
// verifies but is used from too many places within a window is reported as
// RATE_ANOMALY (threat.ClonePolicy). It is off unless a maximum is set.
//
// A build certificate is the same in every install, so clone detection only
// reports it, in every mode, and scores the client it saw, never the
// certificate. An install certificate is one device's by construction: with
// block_installs, a set in defense mode also blocks the request that finds
// one over a maximum and bans the certificate itself for fail_safe's ban
// duration, in the store every gateway shares.
type CloneDetection struct {
	// Window is the counting window ("1h" by default, 1m to 7d). Windows
	// are aligned to the clock, the same at every gateway.
	Window Duration `yaml:"window,omitempty" json:"window,omitempty"`
	// MaxAddresses is the number of distinct client addresses (by the
	// fail_safe prefixes) one certificate may be used from per window;
	// 0 does not count addresses.
	MaxAddresses int `yaml:"max_addresses,omitempty" json:"max_addresses,omitempty"`
	// MaxDevices is the number of distinct device ids (device_headers
	// .deviceID) one certificate may be used with per window; 0 does not
	// count devices.
	MaxDevices int `yaml:"max_devices,omitempty" json:"max_devices,omitempty"`
	// BlockInstalls blocks an install certificate found over a maximum
	// (RATE_ANOMALY, the set's status and message) and bans it for
	// fail_safe.duration across the store, in defense mode; in detection
	// mode it is reported as without it. A build certificate is only ever
	// reported. Needs fail_safe with certificate among its subjects (the
	// ban is a fail-safe ban of the certificate). Default false.
	BlockInstalls bool `yaml:"block_installs,omitempty" json:"block_installs,omitempty"`
}

// Bounds of clone_detection.
const (
	MinCloneWindow = time.Minute
	MaxCloneWindow = 7 * 24 * time.Hour
	MaxCloneCount  = 10_000_000
)

func (c *setCompiler) compileClone(s *Set, sc SetConfig) {
	cd := sc.CloneDetection
	if cd == nil {
		return
	}
	p := threat.ClonePolicy{Window: cd.Window.Std(), MaxAddresses: cd.MaxAddresses, MaxDevices: cd.MaxDevices, BlockInstalls: cd.BlockInstalls}
	ok := true
	if p.Window != 0 || c.has("clone_detection.window") {
		if p.Window < MinCloneWindow || p.Window > MaxCloneWindow {
			c.addf("clone_detection.window", "must be from %s to %s, got %s", MinCloneWindow, "7d", p.Window)
			ok = false
		}
	}
	count := func(field string, v int) {
		if v < 0 || v > MaxCloneCount {
			c.addf(field, "must be from 0 (not counted) to %d, got %d", MaxCloneCount, v)
			ok = false
		}
	}
	count("clone_detection.max_addresses", p.MaxAddresses)
	count("clone_detection.max_devices", p.MaxDevices)
	if p.MaxDevices > 0 && sc.DeviceHeaders["deviceID"] == "" {
		c.addf("clone_detection.max_devices", "needs device_headers.deviceID: the header the app sends its device id in")
		ok = false
	}
	if ok && !p.Enabled() && !c.has("clone_detection.max_addresses") && !c.has("clone_detection.max_devices") {
		c.addf("clone_detection", "counts nothing: set max_addresses or max_devices (or leave clone_detection out)")
		ok = false
	}
	if p.BlockInstalls {
		switch {
		case !s.FailSafe.Enabled():
			c.addf("clone_detection.block_installs", "needs fail_safe: a blocked install certificate is banned for fail_safe.duration")
			ok = false
		case !s.FailSafe.ScoredSubjects().Has(threat.SubjectCertificate):
			c.addf("clone_detection.block_installs", "needs certificate in fail_safe.subjects: the ban is a ban of the certificate")
			ok = false
		}
	}
	if ok {
		p.Window = p.WindowOrDefault()
		s.Clone = p
	}
}

// certUse is what clone detection counts of a request whose certificate
// verified: its address by the scoring prefixes and its device id (when
// the set maps one), taken from subj, the ban check's subject, where it has
// them. Empty when the set does not count.
//
// The use asks the store to ban the certificate (BanFor) when crossing a
// maximum blocks it: an install certificate of a set with block_installs in
// defense mode. The ban rides in the same store call as the count.
func (e *Engine) certUse(set *Set, req *Request, subj threat.Subject, certSHA string, v *verdict, now time.Time) threat.CertUse {
	if !set.Clone.Enabled() {
		return threat.CertUse{}
	}
	// Both kinds are counted whatever the maxima, so a report shows both.
	u := threat.CertUse{CertSHA: certSHA, Address: subj.IP, DeviceID: subj.DeviceID, At: now}
	if set.Clone.BlockInstalls && set.Mode == threat.ModeDefense && v.kind() == certid.KindInstall {
		u.BanFor = set.FailSafe.BanFor
	}
	if u.Address == "" {
		u.Address = e.addrs.key(req.ClientIP, set.FailSafe)
	}
	if u.DeviceID == "" {
		u.DeviceID = deviceValue(req.Header, set.deviceIDHeader)
	}
	return u
}

// cloneDecision is the decision for a good request whose use of its
// certificate raised a clone report level, or (block) found an install
// certificate that the set blocks over a maximum: a RATE_ANOMALY event that
// carries the counts, and the client scored by the reason's subjects (the
// certificate's ban, when blocked, was set by the store in the counting
// call). Allowed in every mode unless block, which the engine asks for in
// defense mode only.
func (e *Engine) cloneDecision(ctx context.Context, set *Set, req *Request, subj threat.Subject, res threat.CloneResult, v *verdict, now time.Time, hit, block bool) Decision {
	p := set.Clone
	data := map[string]any{
		"addresses":    res.Addresses,
		"devices":      res.Devices,
		"maxAddresses": p.MaxAddresses,
		"maxDevices":   p.MaxDevices,
		"window":       p.Window.String(),
		"windowStart":  res.WindowStart.UTC().Format(time.RFC3339),
	}
	if len(res.Sample) > 0 {
		data["sampleAddresses"] = res.Sample
	}
	if block {
		data["certificateBlocked"] = true
		if !res.CertBannedUntil.IsZero() {
			data["certBannedUntil"] = res.CertBannedUntil.UTC().Format(time.RFC3339)
		}
	}
	scored := subj.Only(set.FailSafe.ScoredSubjects() & threat.ReasonRateAnomaly.Subjects())
	score, total, banned := e.score(ctx, set, scored, threat.ReasonRateAnomaly)
	ev := e.buildEvent(set, req, threat.ReasonRateAnomaly, data, v, now, score, total, banned || block, block)
	d := Decision{Action: Allow, Reason: threat.ReasonRateAnomaly, FusionSet: set.ID, Mode: set.Mode, Event: ev, CacheHit: hit}
	if block {
		d.Action, d.Status, d.Message = Block, set.Status, set.Message
	}
	if v != nil {
		d.Cert = v.cert
	}
	if set.Events && e.pipeline != nil {
		e.pipeline.Emit(ev)
		d.Emitted = true
	}
	return d
}
