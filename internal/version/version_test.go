package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string // the version
	}{
		{"mcc binary, release", debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "v0.5.0"}}, "v0.5.0"},
		{"mcc binary, checkout", debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "3f2c1a9b0d4e5f6a"}, {Key: "vcs.modified", Value: "true"}}},
			"(devel)"},
		{"xcaddy build", debug.BuildInfo{Main: debug.Module{Path: "caddy", Version: "(devel)"},
			Deps:     []*debug.Module{{Path: "github.com/caddyserver/caddy/v2", Version: "v2.10.0"}, {Path: ModulePath, Version: "v0.5.0"}},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "caddy-own-revision"}}}, "v0.5.0"},
		{"xcaddy build, replaced by a checkout", debug.BuildInfo{Main: debug.Module{Path: "caddy"},
			Deps: []*debug.Module{{Path: ModulePath, Version: "v0.5.0", Replace: &debug.Module{Path: "../mcc"}}}}, "v0.5.0"},
		{"replaced by another version", debug.BuildInfo{Main: debug.Module{Path: "caddy"},
			Deps: []*debug.Module{{Path: ModulePath, Version: "v0.5.0", Replace: &debug.Module{Path: "fork", Version: "v0.5.1"}}}}, "v0.5.1"},
		{"no mcc", debug.BuildInfo{Main: debug.Module{Path: "other"}}, "(unknown)"},
	} {
		if got := fromBuildInfo(&tc.bi).Version; got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestRevision: the revision is read for the mcc binary only, not from
// the build settings of another main module (Caddy's own revision).
func TestRevision(t *testing.T) {
	set := []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}
	if in := fromBuildInfo(&debug.BuildInfo{Main: debug.Module{Path: ModulePath}, Settings: set}); in.Revision != "abc" || !in.Modified {
		t.Errorf("mcc binary: %+v", in)
	}
	if in := fromBuildInfo(&debug.BuildInfo{Main: debug.Module{Path: "caddy"}, Settings: set,
		Deps: []*debug.Module{{Path: ModulePath, Version: "v1.0.0"}}}); in.Revision != "" || in.Modified {
		t.Errorf("xcaddy build: %+v", in)
	}
}
