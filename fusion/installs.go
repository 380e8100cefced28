package fusion

import (
	"strconv"
	"strings"
	"time"

	"github.com/mccgate/mcc/pki"
	"github.com/mccgate/mcc/pki/attestation"
	"github.com/mccgate/mcc/pki/certid"
)

// Installs is a set's installs block: which kinds of certificate its
// routes accept, and how mcc server enrolls installs (the lifetime it
// issues, the enrollment limits, the attestation it asks for).
//
// The gateways read accept and max_lifetime; mcc server reads lifetime,
// enrollment and attestation. Both read the same compiled policy
// (Set.Installs), so a set means the same thing to both.
type Installs struct {
	// Accept is the kinds of certificate the set's routes accept: build
	// (the bundle shipped in the app), install (issued by enrollment for a
	// key made on the device), or both. Default both. With [install], a
	// build certificate is good for enrollment and nothing else.
	Accept []string `yaml:"accept,omitempty" json:"accept,omitempty"`
	// Lifetime is how long mcc server's install certificates live
	// (default 24h, at most max_lifetime).
	Lifetime Duration `yaml:"lifetime,omitempty" json:"lifetime,omitempty"`
	// MaxLifetime is the longest install certificate lifetime the gateways
	// accept (default 30d, the most mcc server issues).
	MaxLifetime Duration `yaml:"max_lifetime,omitempty" json:"max_lifetime,omitempty"`
	// Enrollment bounds how many installs one build certificate and one
	// client address may enroll per window.
	Enrollment *Enrollment `yaml:"enrollment,omitempty" json:"enrollment,omitempty"`
	// Attestation is the key attestation enrollment asks for.
	Attestation *Attestation `yaml:"attestation,omitempty" json:"attestation,omitempty"`
}

// Enrollment is installs.enrollment. A build certificate pulled out of the
// app and enrolling thousands of installs crosses max_per_build: the
// excess is refused, reported as RATE_ANOMALY, and stopped for good by
// revoking the build.
type Enrollment struct {
	// Window is the counting window (default 1h, 1m to 7d).
	Window Duration `yaml:"window,omitempty" json:"window,omitempty"`
	// MaxPerBuild is the enrollments one build certificate may make per
	// window (default 10000; 0 keeps the default).
	MaxPerBuild int `yaml:"max_per_build,omitempty" json:"max_per_build,omitempty"`
	// MaxPerAddress is the enrollments one client address (by the
	// fail_safe prefixes) may make per window (default 20).
	MaxPerAddress int `yaml:"max_per_address,omitempty" json:"max_per_address,omitempty"`
}

// Attestation is installs.attestation (see package pki/attestation).
type Attestation struct {
	// Mode is required, optional or off (default off).
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// Packages are the Android application ids the set accepts.
	Packages []string `yaml:"packages,omitempty" json:"packages,omitempty"`
	// SigningCertDigests are SHA-256 digests (hex, colons allowed) of the
	// app signing certificates the set accepts.
	SigningCertDigests []string `yaml:"signing_cert_digests,omitempty" json:"signing_cert_digests,omitempty"`
	// MinSecurityLevel is tee (default) or strongbox.
	MinSecurityLevel string `yaml:"min_security_level,omitempty" json:"min_security_level,omitempty"`
}

// Defaults and bounds of the installs block.
const (
	DefaultEnrollmentWindow    = time.Hour
	DefaultEnrollMaxPerBuild   = 10_000
	DefaultEnrollMaxPerAddress = 20
	MinEnrollmentWindow        = time.Minute
	MaxEnrollmentWindow        = 7 * 24 * time.Hour
	MaxEnrollmentCount         = 10_000_000
	minInstallLifetime         = 5 * time.Minute
	DefaultInstallLifetime     = pki.DefaultInstallValidity
	DefaultInstallMaxLifetime  = pki.MaxInstallValidity
)

// InstallPolicy is a compiled installs block.
type InstallPolicy struct {
	// AcceptBuild and AcceptInstall say which certificates the set's
	// routes accept (both true by default).
	AcceptBuild, AcceptInstall bool
	// Lifetime is what mcc server issues; MaxLifetime what gateways accept.
	Lifetime, MaxLifetime time.Duration
	// Enrollment limits, defaults applied.
	EnrollWindow                  time.Duration
	EnrollPerBuild, EnrollPerAddr int
	// Attestation is the enrollment's attestation policy (mode off when
	// the set has none).
	Attestation attestation.Policy
}

// Accepts reports whether the set's routes accept a certificate of kind.
func (p InstallPolicy) Accepts(kind certid.Kind) bool {
	if kind == certid.KindInstall {
		return p.AcceptInstall
	}
	return p.AcceptBuild
}

// AcceptNames lists the accepted kinds as written in the file.
func (p InstallPolicy) AcceptNames() []string {
	var out []string
	if p.AcceptBuild {
		out = append(out, certid.KindBuild.String())
	}
	if p.AcceptInstall {
		out = append(out, certid.KindInstall.String())
	}
	return out
}

func (c *setCompiler) compileInstalls(s *Set, sc SetConfig) {
	p := InstallPolicy{
		AcceptBuild: true, AcceptInstall: true,
		Lifetime: DefaultInstallLifetime, MaxLifetime: DefaultInstallMaxLifetime,
		EnrollWindow: DefaultEnrollmentWindow, EnrollPerBuild: DefaultEnrollMaxPerBuild, EnrollPerAddr: DefaultEnrollMaxPerAddress,
	}
	in := sc.Installs
	if in == nil {
		s.Installs = p
		return
	}
	if len(in.Accept) > 0 || c.has("installs.accept") {
		p.AcceptBuild, p.AcceptInstall = false, false
		for i, k := range in.Accept {
			switch strings.TrimSpace(k) {
			case certid.KindBuild.String():
				p.AcceptBuild = true
			case certid.KindInstall.String():
				p.AcceptInstall = true
			default:
				c.addf("installs.accept["+strconv.Itoa(i)+"]", "%q: want build or install", truncate(k, 40))
			}
		}
		if len(in.Accept) == 0 {
			c.addf("installs.accept", "accepts nothing: list build, install or both")
		}
	}
	if d := in.MaxLifetime.Std(); d != 0 || c.has("installs.max_lifetime") {
		if d < minInstallLifetime || d > pki.MaxInstallValidity {
			c.addf("installs.max_lifetime", "must be from %s to %s, got %s", minInstallLifetime, "30d", d)
		} else {
			p.MaxLifetime = d
		}
	}
	if d := in.Lifetime.Std(); d != 0 || c.has("installs.lifetime") {
		switch {
		case d < minInstallLifetime || d > pki.MaxInstallValidity:
			c.addf("installs.lifetime", "must be from %s to %s, got %s", minInstallLifetime, "30d", d)
		case d > p.MaxLifetime:
			c.addf("installs.lifetime", "%s is longer than installs.max_lifetime (%s): the gateways would refuse every install certificate", d, p.MaxLifetime)
		default:
			p.Lifetime = d
		}
	} else if p.Lifetime > p.MaxLifetime {
		p.Lifetime = p.MaxLifetime
	}
	if e := in.Enrollment; e != nil {
		if d := e.Window.Std(); d != 0 || c.has("installs.enrollment.window") {
			if d < MinEnrollmentWindow || d > MaxEnrollmentWindow {
				c.addf("installs.enrollment.window", "must be from %s to %s, got %s", MinEnrollmentWindow, "7d", d)
			} else {
				p.EnrollWindow = d
			}
		}
		count := func(field string, v int, dst *int) {
			switch {
			case v < 0 || v > MaxEnrollmentCount:
				c.addf(field, "must be from 1 to %d, got %d", MaxEnrollmentCount, v)
			case v > 0:
				*dst = v
			case c.has(field):
				c.addf(field, "must be from 1 to %d, got 0 (leave it out for the default)", MaxEnrollmentCount)
			}
		}
		count("installs.enrollment.max_per_build", e.MaxPerBuild, &p.EnrollPerBuild)
		count("installs.enrollment.max_per_address", e.MaxPerAddress, &p.EnrollPerAddr)
	}
	if a := in.Attestation; a != nil {
		pol := attestation.Policy{Mode: attestation.Mode(a.Mode), Expect: attestation.Expectations{
			PackageNames: a.Packages, MinSecurityLevel: attestation.SecurityLevel(a.MinSecurityLevel),
		}}
		for i, d := range a.SigningCertDigests {
			v, err := attestation.ParseDigest(d)
			if err != nil {
				c.addf("installs.attestation.signing_cert_digests["+strconv.Itoa(i)+"]", "%v", err)
				continue
			}
			pol.Expect.SigningCertDigests = append(pol.Expect.SigningCertDigests, v)
		}
		if len(pol.Expect.SigningCertDigests) == len(a.SigningCertDigests) {
			if err := pol.Validate(); err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					c.addf("installs.attestation", "%s", strings.TrimPrefix(line, "attestation: "))
				}
			}
		}
		p.Attestation = pol
	}
	s.Installs = p
}

// Purpose says what a request presents its certificate for. The gateways
// only make PurposeAccess requests; mcc server's enrollment makes the
// others, so the kind of certificate each step takes is decided by the
// same engine as everything else.
type Purpose uint8

const (
	// PurposeAccess is a request to the set's routes: installs.accept
	// decides which kinds are good.
	PurposeAccess Purpose = iota
	// PurposeEnroll is an enrollment: a build certificate only, whatever
	// installs.accept says (with accept [install] it is the one thing a
	// build certificate is good for).
	PurposeEnroll
	// PurposeRenew is a renewal: an install certificate only.
	PurposeRenew
)

// acceptsKind reports whether a certificate of kind is good for purpose.
func (p InstallPolicy) acceptsKind(purpose Purpose, kind certid.Kind) bool {
	switch purpose {
	case PurposeEnroll:
		return kind == certid.KindBuild
	case PurposeRenew:
		return kind == certid.KindInstall
	}
	return p.Accepts(kind)
}
