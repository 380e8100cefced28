package fusion

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ByteSize is a size in bytes written as a number of bytes (1048576) or
// with a binary unit: "512KiB", "16MiB", "1GiB" (KB, MB and GB are read as
// the same binary units).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
	{"B", 1},
}

// ParseByteSize parses a ByteSize.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q: want a number of bytes or a size like \"16MiB\"", truncate(s, 40))
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", truncate(s, 40))
	}
	return ByteSize(n * mult), nil
}

// UnmarshalYAML implements yaml.Unmarshaler. Only an integer or a string
// is a size: a boolean or a list is a type error like any other.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!str") {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: size must be a number of bytes or a string like \"16MiB\"", n.Line)}}
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*b = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// String formats b with the largest binary unit that divides it.
func (b ByteSize) String() string {
	switch {
	case b != 0 && b%(1<<30) == 0:
		return strconv.FormatInt(int64(b)>>30, 10) + "GiB"
	case b != 0 && b%(1<<20) == 0:
		return strconv.FormatInt(int64(b)>>20, 10) + "MiB"
	case b != 0 && b%(1<<10) == 0:
		return strconv.FormatInt(int64(b)>>10, 10) + "KiB"
	}
	return strconv.FormatInt(int64(b), 10)
}

// compileCache applies cache.max_bytes.
func (c *setCompiler) compileCache(s *Set, sc SetConfig) {
	s.CacheMaxBytes = DefaultCacheMaxBytes
	if sc.Cache == nil || sc.Cache.MaxBytes == 0 {
		return
	}
	if b := int64(sc.Cache.MaxBytes); b < MinCacheMaxBytes || b > MaxCacheMaxBytes {
		c.addf("cache.max_bytes", "%s is out of range (%s-%s)", sc.Cache.MaxBytes, ByteSize(MinCacheMaxBytes), ByteSize(MaxCacheMaxBytes))
		return
	}
	s.CacheMaxBytes = int64(sc.Cache.MaxBytes)
}
