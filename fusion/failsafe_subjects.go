package fusion

import (
	"strconv"

	"github.com/mccgate/mcc/threat"
)

// Bounds of fail_safe.ipv4_prefix and fail_safe.ipv6_prefix. A shorter
// prefix would let one client's failures ban a whole provider's range.
const (
	MinIPv4Prefix = 16
	MinIPv6Prefix = 32
)

// compileFailSafeSubjects reads fail_safe.subjects, ipv4_prefix and
// ipv6_prefix into s.FailSafe. Unset values stay zero, which threat.Policy
// reads as its defaults.
func (c *setCompiler) compileFailSafeSubjects(s *Set, sc SetConfig) {
	fs := sc.FailSafe
	if fs == nil {
		return
	}
	if len(fs.Subjects) > 0 || c.has("fail_safe.subjects") {
		var set threat.SubjectSet
		for i, name := range fs.Subjects {
			field := "fail_safe.subjects[" + strconv.Itoa(i) + "]"
			k, err := threat.ParseSubjectKind(name)
			if err != nil {
				c.addf(field, "%v", err)
				continue
			}
			if set.Has(k) {
				c.addf(field, "%s listed twice", name)
				continue
			}
			if k == threat.SubjectDevice && sc.DeviceHeaders["deviceID"] == "" {
				c.addf(field, "device needs device_headers.deviceID: the header the app sends its device id in")
				continue
			}
			set |= threat.SubjectsOf(k)
		}
		if len(fs.Subjects) == 0 {
			c.addf("fail_safe.subjects", "empty: list at least one of address, device, certificate, or leave subjects out for all three")
		}
		s.FailSafe.Subjects = set
	}
	prefix := func(field string, v, lo, hi int) {
		if v == 0 && !c.has(field) {
			return
		}
		if v < lo || v > hi {
			c.addf(field, "must be a prefix length from %d to %d, got %d", lo, hi, v)
		}
	}
	prefix("fail_safe.ipv4_prefix", fs.IPv4Prefix, MinIPv4Prefix, 32)
	prefix("fail_safe.ipv6_prefix", fs.IPv6Prefix, MinIPv6Prefix, 128)
	s.FailSafe.IPv4Prefix, s.FailSafe.IPv6Prefix = fs.IPv4Prefix, fs.IPv6Prefix
}
