package threat

import "time"

// Clone detection: a certificate that verifies but is used from too many
// places. A build certificate is the same file in every install of a build,
// and pulling it out of an app package is routine, so a bot farm can present
// a genuine certificate on every connection. What gives it away is breadth:
// one certificate, many client addresses (by the scoring prefix, AddressKey)
// or many device ids within a window. Past a fusion set's thresholds the
// engine reports RATE_ANOMALY and scores the client it saw; it never scores
// the certificate for it, and it never blocks the request or bans the
// certificate, since a build certificate must not be bannable by one
// client's behaviour. The one exception is an install certificate (issued
// to one device) of a set with BlockInstalls in defense mode: it is
// blocked and banned (CertUse.BanFor).

// DefaultCloneWindow is the counting window when a ClonePolicy has none.
const DefaultCloneWindow = time.Hour

// CloneSampleSize bounds the addresses a clone report carries: the first
// distinct ones of the window, enough to see where a clone is used without
// making an event (or a store entry) grow with the attack.
const CloneSampleSize = 5

// ClonePolicy is a fusion set's clone detection (clone_detection): a
// certificate used from MaxAddresses distinct client addresses, or with
// MaxDevices distinct device ids, within one Window is reported. A zero
// maximum does not count that kind; both zero is off.
type ClonePolicy struct {
	Window       time.Duration
	MaxAddresses int
	MaxDevices   int
	// BlockInstalls is the engine's switch (clone_detection
	// .block_installs): an install certificate, one device's by
	// construction, is blocked and banned once it crosses a maximum in
	// defense mode. Stores ignore it; the engine asks them to ban through
	// CertUse.BanFor.
	BlockInstalls bool
}

// Enabled reports whether clone detection counts anything.
func (p ClonePolicy) Enabled() bool { return p.MaxAddresses > 0 || p.MaxDevices > 0 }

// WindowOrDefault returns p.Window, or DefaultCloneWindow when unset.
func (p ClonePolicy) WindowOrDefault() time.Duration {
	if p.Window <= 0 {
		return DefaultCloneWindow
	}
	return p.Window
}

// WindowStart returns the start of the window that holds now. Windows are
// aligned to the Unix epoch rather than to a certificate's first use, so
// every gateway and every store (the Redis keys carry it in their names)
// agree on them without sharing any state.
func (p ClonePolicy) WindowStart(now time.Time) time.Time {
	return time.Unix(0, p.windowStart(now.UnixNano()))
}

func (p ClonePolicy) windowStart(now int64) int64 {
	w := int64(p.WindowOrDefault())
	return now - now%w
}

// Levels returns the report level of each count: 0 below its maximum (or
// when the maximum is 0), 1 from the maximum, 2 from twice it, 3 from four
// times it, and so on. A store reports a use when it raises either level
// above the highest reported in the window, so a certificate is reported
// once when it crosses a threshold and again each time the count doubles,
// never once per request. The Redis store's script (redisstore, cloneLevel)
// is this function in Lua; a test holds the two to the same results.
func (p ClonePolicy) Levels(addresses, devices int) (a, d int) {
	return cloneLevel(addresses, p.MaxAddresses), cloneLevel(devices, p.MaxDevices)
}

func cloneLevel(n, max int) int {
	if max <= 0 || n < max {
		return 0
	}
	level := 1
	for t := max * 2; n >= t && t > 0; t *= 2 {
		level++
	}
	return level
}

// CertUse is one request whose certificate verified, as clone detection
// counts it.
type CertUse struct {
	// CertSHA is the certificate's SHA-256 in hex; empty means there is
	// nothing to count.
	CertSHA string
	// Address is the client address as scored (AddressKey: an address, or
	// a prefix such as "2001:db8:1:2::/64"); empty is not counted.
	Address string
	// DeviceID is the request's device id; empty is not counted.
	DeviceID string
	// At is when the use happened: the engine's clock, read once per
	// request (the store reads its own when zero).
	At time.Time
	// BanFor, when positive, bans the certificate itself (its Subject
	// CertSHA key) for BanFor once this use finds it at or over a maximum
	// and it is not banned already, in the same store call, so every
	// gateway sharing the store refuses it from its next request. The
	// engine sets it only for an install certificate of a set that blocks
	// them (ClonePolicy.BlockInstalls) in defense mode: a build
	// certificate is every install's and is never banned for this.
	BanFor time.Duration
}

// CloneResult is what counting one use found.
type CloneResult struct {
	// Addresses and Devices are the distinct client addresses and device
	// ids that used the certificate in the window, this use included:
	// exact up to a few dozen, estimates (a HyperLogLog, a few percent off)
	// above.
	Addresses, Devices int
	// WindowStart is the start of the counting window.
	WindowStart time.Time
	// Report is set for the one use in the window that first raised a
	// level (ClonePolicy.Levels): the engine reports that use, and only it.
	Report bool
	// Sample holds up to CloneSampleSize addresses that used the
	// certificate in the window; filled only when Report is set.
	Sample []string
	// CertBannedUntil is set when the use asked for a ban (CertUse.BanFor)
	// and found the certificate over a maximum: the end of its ban, the
	// one this use set or one already live.
	CertBannedUntil time.Time
}

// Over reports whether the counts are at or over a maximum of p.
func (r CloneResult) Over(p ClonePolicy) bool {
	a, d := p.Levels(r.Addresses, r.Devices)
	return a > 0 || d > 0
}
