package fusion

import (
	"context"
	"time"

	"github.com/mccgate/mcc/threat"
)

// CloneDetection is a set's clone_detection block: a certificate that
// verifies but is used from too many places within a window is reported as
// RATE_ANOMALY (threat.ClonePolicy). It is off unless a maximum is set.
//
// A build certificate is the same in every install, so clone detection only
// reports it, in every mode, and scores the client it saw, never the
// certificate. (Install certificates, one per device, are where a set could
// also block the certificate itself: that switch belongs here, next to the
// maxima, once the enrollment part of issue 13 issues them.)
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
	p := threat.ClonePolicy{Window: cd.Window.Std(), MaxAddresses: cd.MaxAddresses, MaxDevices: cd.MaxDevices}
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
	if ok {
		p.Window = p.WindowOrDefault()
		s.Clone = p
	}
}

// certUse is what clone detection counts of a request whose certificate
// verified: its address by the scoring prefixes and its device id (when
// the set maps one), taken from subj, the ban check's subject, where it has
// them. Empty when the set does not count.
func (e *Engine) certUse(set *Set, req *Request, subj threat.Subject, certSHA string, now time.Time) threat.CertUse {
	if !set.Clone.Enabled() {
		return threat.CertUse{}
	}
	// Both kinds are counted whatever the maxima, so a report shows both.
	u := threat.CertUse{CertSHA: certSHA, Address: subj.IP, DeviceID: subj.DeviceID, At: now}
	if u.Address == "" {
		u.Address = e.addrs.key(req.ClientIP, set.FailSafe)
	}
	if u.DeviceID == "" {
		u.DeviceID = deviceValue(req.Header, set.deviceIDHeader)
	}
	return u
}

// cloneReport is the decision for a good request whose use of its
// certificate raised a clone report level: allowed in every mode, with a
// RATE_ANOMALY event that carries the counts, and the client scored by the
// reason's subjects (never the certificate).
func (e *Engine) cloneReport(ctx context.Context, set *Set, req *Request, subj threat.Subject, res threat.CloneResult, v *verdict, now time.Time, hit bool) Decision {
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
	scored := subj.Only(set.FailSafe.ScoredSubjects() & threat.ReasonRateAnomaly.Subjects())
	score, total, banned := e.score(ctx, set, scored, threat.ReasonRateAnomaly)
	ev := e.buildEvent(set, req, threat.ReasonRateAnomaly, data, v, now, score, total, banned, false)
	d := Decision{Action: Allow, Reason: threat.ReasonRateAnomaly, FusionSet: set.ID, Mode: set.Mode, Event: ev, CacheHit: hit}
	if v != nil {
		d.Cert = v.cert
	}
	if set.Events && e.pipeline != nil {
		e.pipeline.Emit(ev)
		d.Emitted = true
	}
	return d
}
