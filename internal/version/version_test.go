package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"mcc binary, release", debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "v0.5.0"}}, "v0.5.0"},
		{"mcc binary, checkout", debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "3f2c1a9b0d4e5f6a"}, {Key: "vcs.modified", Value: "true"}}},
			"(devel)+3f2c1a9b0d4e.modified"},
		{"xcaddy build", debug.BuildInfo{Main: debug.Module{Path: "caddy", Version: "(devel)"},
			Deps:     []*debug.Module{{Path: "github.com/caddyserver/caddy/v2", Version: "v2.10.0"}, {Path: ModulePath, Version: "v0.5.0"}},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "caddy-own-revision"}}}, "v0.5.0"},
		{"xcaddy build, replaced by a checkout", debug.BuildInfo{Main: debug.Module{Path: "caddy"},
			Deps: []*debug.Module{{Path: ModulePath, Version: "v0.5.0", Replace: &debug.Module{Path: "../mcc"}}}}, "v0.5.0"},
		{"replaced by another version", debug.BuildInfo{Main: debug.Module{Path: "caddy"},
			Deps: []*debug.Module{{Path: ModulePath, Version: "v0.5.0", Replace: &debug.Module{Path: "fork", Version: "v0.5.1"}}}}, "v0.5.1"},
		{"no mcc", debug.BuildInfo{Main: debug.Module{Path: "other"}}, "(unknown)"},
	} {
		if got := fromBuildInfo(&tc.bi).Short(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
