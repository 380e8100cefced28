// Package version reports which mcc is running, from the build info the
// Go toolchain embeds: in the mcc binary mcc is the main module; in a
// Caddy built with xcaddy it is one of the dependencies.
package version

import "runtime/debug"

// ModulePath is mcc's module path.
const ModulePath = "github.com/mccgate/mcc"

// Info is the running mcc's module version ("(devel)" for a build from a
// checkout), the VCS revision when the main module is mcc and it is
// known, and whether the checkout had changes.
type Info struct {
	Version  string
	Revision string
	Modified bool
}

// Get reads the build info.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "(unknown)"}
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Version: "(unknown)"}
	var m *debug.Module
	if bi.Main.Path == ModulePath {
		m = &bi.Main
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	} else {
		for _, d := range bi.Deps {
			if d.Path == ModulePath {
				m = d
				break
			}
		}
	}
	if m == nil {
		return in
	}
	if m.Replace != nil && m.Replace.Version != "" {
		m = m.Replace
	}
	if m.Version != "" {
		in.Version = m.Version
	}
	return in
}
