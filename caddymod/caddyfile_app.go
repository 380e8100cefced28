package caddymod

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/storeurl"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("mcc", parseGlobalOption)
}

// parseGlobalOption sets up the mcc app from the global option:
//
//	mcc {
//		fusion_sets <file>
//		fusion_set <id> {
//			description <text>
//			trusted_ca <pem-file>
//			intermediates <pem-file>
//			app_id <app>
//			spki_pin <base64>...
//			revoke_serial <hex>...
//			revoke_fingerprint <sha256-hex>...
//			revocation_file <path>...
//			crl <path>...
//			min_rsa_bits <n>
//			allowed_curves <curve>...
//			require_client_auth_eku true|false
//			max_lifetime <duration>
//			max_chain_depth <n>
//			block_build <build-id>...
//			min_build_date <date>
//			mode defense|detection
//			threat_events on|off
//			message <text>
//			status <code>
//			score <REASON_CODE> <n>
//			clone_detection {
//				window <duration>
//				max_addresses <n>
//				max_devices <n>
//				block_installs true|false
//			}
//			installs {
//				accept build|install...
//				max_lifetime <duration>
//				lifetime <duration>
//				enrollment {
//					window <duration>
//					max_per_build <n>
//					max_per_address <n>
//				}
//				attestation {
//					mode required|optional|off
//					packages <application-id>...
//					signing_cert_digests <sha256-hex>...
//					min_security_level tee|strongbox
//				}
//			}
//			fail_safe <threshold> [window <duration>] [duration <duration>]
//			fail_safe {
//				threshold <n>
//				window <duration>
//				duration <duration>
//			}
//			device_header <device-key> <Header-Name>
//		}
//		store memory|redis <url>
//		sink log
//		sink file <path> [max_size <size>] [keep <n>]
//		sink webhook <url> { spool_dir <dir> header <name> <value> ... }
//		sink redis_stream <url> { stream <name> max_len <n> }
//		node <name>
//		watch_interval <duration>
//	}
//
// The redis URL, the fusion_sets file, the node and the sinks' values may use
// Caddy's runtime placeholders {env.NAME} and {file.PATH}, expanded when the
// app is provisioned: `store redis {env.MCC_REDIS_URL}` or
// `store redis redis://:{file./run/secrets/redis-password}@10.0.0.5:6379/0`
// keep the password out of the config Caddy serves on /config and
// autosaves. ({$NAME} is the Caddyfile's own substitution: it is expanded
// when the Caddyfile is adapted, so the secret would be in the config.)
// Inline fusion sets are compiled while the Caddyfile is adapted, so a
// mistake is reported with its Caddyfile line. Relative paths are relative
// to the working directory.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("the mcc global option may be given only once")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "mcc", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile parses the mcc global option; see parseGlobalOption.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	seenIDs := map[string]int{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "fusion_sets":
			if a.FusionSetsFile != "" {
				return d.Err("fusion_sets may be given only once (one file holds many sets)")
			}
			if !d.AllArgs(&a.FusionSetsFile) {
				return d.ArgErr()
			}
		case "fusion_set":
			line := d.Line()
			sc, err := parseInlineSet(d)
			if err != nil {
				return err
			}
			if first, dup := seenIDs[sc.ID]; dup {
				return d.Errf("fusion_set %q is defined more than once (first at line %d)", sc.ID, first)
			}
			seenIDs[sc.ID] = line
			// Compile now so that a mistake points at this Caddyfile.
			if _, err := fusion.CompileSet(sc, workingDir(), ""); err != nil {
				// Point at the fusion_set line, not at the end of its block.
				return fmt.Errorf("fusion_set %q: %w, at %s:%d", sc.ID, err, d.File(), line)
			}
			a.FusionSets = append(a.FusionSets, sc)
		case "store":
			if a.StoreRaw != nil {
				return d.Err("store may be given only once")
			}
			raw, err := parseStore(d)
			if err != nil {
				return err
			}
			a.StoreRaw = raw
		case "sink":
			raw, err := parseSink(d)
			if err != nil {
				return err
			}
			a.SinksRaw = append(a.SinksRaw, raw)
		case "node":
			if !d.AllArgs(&a.Node) {
				return d.ArgErr()
			}
		case "watch_interval":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("watch_interval: invalid duration %q", v)
			}
			a.WatchInterval = caddy.Duration(dur)
		default:
			return d.Errf("unrecognized mcc option %q", d.Val())
		}
	}
	return nil
}

// parseStore parses `store memory` or `store redis <url>` into the store
// module's JSON.
func parseStore(d *caddyfile.Dispenser) (json.RawMessage, error) {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == storeurl.Memory:
		return caddyconfig.JSONModuleObject(new(MemoryStore), "type", "memory", nil), nil
	case len(args) == 2 && args[0] == "redis":
		// A URL with placeholders ({env.NAME}, {file.PATH}) is checked
		// once they are expanded, at provisioning.
		if !strings.Contains(args[1], "{") {
			_, kind, err := storeurl.Parse(args[1])
			if err == nil && kind != storeurl.KindRedis {
				err = errors.New("want a redis:// or rediss:// URL, or a placeholder such as {env.MCC_REDIS_URL}")
			}
			if err != nil {
				return nil, d.Errf("store redis: %v", err)
			}
		}
		return caddyconfig.JSONModuleObject(&RedisStore{URL: args[1]}, "type", "redis", nil), nil
	default:
		return nil, d.Err("store: want `store memory` or `store redis <url>`")
	}
}

// parseSink parses a sink into its module's JSON:
//
//	sink log
//	sink file <path> [max_size <size>] [keep <n>]
//	sink webhook <url> {
//		spool_dir <dir>
//		header <name> <value>
//		...
//	}
//	sink redis_stream <url> {
//		stream <name>
//		max_len <n>
//	}
//
// The first argument is the file sink's path or the URL; then come the keys
// of the fusion file's sinks section (fusion.SinkConfig), the same names
// and values, as `key value` pairs on the line (one-value keys) or one per
// line in the block.
func parseSink(d *caddyfile.Dispenser) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.Errf("sink: want a sink type (%s)", strings.Join(fusion.SinkTypes(), ", "))
	}
	sc := fusion.SinkConfig{Type: d.Val()}
	first := ""
	switch sc.Type {
	case fusion.SinkLog:
	case fusion.SinkFile:
		first = "path"
	case fusion.SinkWebhook, fusion.SinkRedisStream:
		first = "url"
	default:
		return nil, d.Errf("sink: unknown sink type %q (want %s)", sc.Type, strings.Join(fusion.SinkTypes(), ", "))
	}
	args := d.RemainingArgs()
	if first != "" {
		if len(args) == 0 {
			return nil, d.Errf("sink %s: missing %s", sc.Type, first)
		}
		if err := sc.SetKey(first, args[:1]); err != nil {
			return nil, d.Errf("sink %s: %v", sc.Type, err)
		}
		args = args[1:]
	}
	for len(args) > 0 {
		if len(args) < 2 {
			return nil, d.Errf("sink %s: %s needs a value", sc.Type, args[0])
		}
		if err := sc.SetKey(args[0], args[1:2]); err != nil {
			return nil, d.Errf("sink %s: %v", sc.Type, err)
		}
		args = args[2:]
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		key := d.Val()
		if key == first {
			return nil, d.Errf("sink %s: the %s is the first argument", sc.Type, first)
		}
		if err := sc.SetKey(key, d.RemainingArgs()); err != nil {
			return nil, d.Errf("sink %s: %v", sc.Type, err)
		}
	}
	if err := sc.CheckWritten(); err != nil {
		return nil, d.Errf("sink %s: %v", sc.Type, err)
	}
	return caddyconfig.JSON(sc, nil), nil
}

// parseSize reads a byte count: a whole number with an optional unit
// (B, KB, KiB, MB, MiB, GB, GiB; case-insensitive).
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
		{"kb", 1000}, {"mb", 1000 * 1000}, {"gb", 1000 * 1000 * 1000},
		{"b", 1},
	}
	lower := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range units {
		if num, ok := strings.CutSuffix(lower, u.suffix); ok {
			lower, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(lower, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid size %q (e.g. 10485760, 10MiB)", s)
	}
	return n * mult, nil
}

// parseInlineSet parses `fusion_set <id> { ... }` into the same model as a
// fusion set file entry.
func parseInlineSet(d *caddyfile.Dispenser) (fusion.SetConfig, error) {
	var sc fusion.SetConfig
	if !d.NextArg() {
		return sc, d.Err("fusion_set: missing fusion set id")
	}
	sc.ID = d.Val()
	if d.NextArg() {
		return sc, d.Errf("fusion_set %s: unexpected argument %q (the settings go in a block)", sc.ID, d.Val())
	}
	one := func(name string) (string, error) {
		var v string
		if !d.AllArgs(&v) {
			return "", d.Errf("fusion_set %s: %s takes exactly one value", sc.ID, name)
		}
		return v, nil
	}
	some := func(name string) ([]string, error) {
		vs := d.RemainingArgs()
		if len(vs) == 0 {
			return nil, d.Errf("fusion_set %s: %s needs at least one value", sc.ID, name)
		}
		return vs, nil
	}
	atoi := func(name string) (int, error) {
		v, err := one(name)
		if err != nil {
			return 0, err
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, d.Errf("fusion_set %s: %s: want a whole number, got %q", sc.ID, name, v)
		}
		return n, nil
	}
	duration := func(name, v string) (fusion.Duration, error) {
		dur, err := fusion.ParseDuration(v)
		if err != nil {
			return 0, d.Errf("fusion_set %s: %s: %v", sc.ID, name, err)
		}
		return fusion.Duration(dur), nil
	}

	for nesting := d.Nesting(); d.NextBlock(nesting); {
		key := d.Val()
		var err error
		switch key {
		case "description":
			sc.Description = strings.Join(d.RemainingArgs(), " ")
		case "trusted_ca":
			sc.TrustedCA.File, err = one(key)
		case "intermediates":
			var f string
			if f, err = one(key); err == nil {
				sc.Intermediates = &fusion.CASource{File: f}
			}
		case "app_id":
			sc.AppID, err = one(key)
		case "spki_pin":
			var vs []string
			vs, err = some(key)
			sc.SPKIPins = append(sc.SPKIPins, vs...)
		case "revoke_serial":
			var vs []string
			vs, err = some(key)
			sc.Revocation.Serials = append(sc.Revocation.Serials, vs...)
		case "revoke_fingerprint":
			var vs []string
			vs, err = some(key)
			sc.Revocation.Fingerprints = append(sc.Revocation.Fingerprints, vs...)
		case "revocation_file":
			var vs []string
			vs, err = some(key)
			sc.Revocation.Files = append(sc.Revocation.Files, vs...)
		case "crl":
			var vs []string
			vs, err = some(key)
			sc.Revocation.CRLs = append(sc.Revocation.CRLs, vs...)
		case "min_rsa_bits":
			sc.Crypto.MinRSABits, err = atoi(key)
		case "allowed_curves":
			var vs []string
			vs, err = some(key)
			sc.Crypto.AllowedCurves = append(sc.Crypto.AllowedCurves, vs...)
		case "require_client_auth_eku":
			var v string
			if v, err = one(key); err == nil {
				var b bool
				if b, err = parseBool(v); err != nil {
					err = d.Errf("fusion_set %s: %s: %v", sc.ID, key, err)
				} else {
					sc.Crypto.RequireClientAuthEKU = &b
				}
			}
		case "max_lifetime":
			var v string
			if v, err = one(key); err == nil {
				sc.MaxLifetime, err = duration(key, v)
			}
		case "max_chain_depth":
			sc.MaxChainDepth, err = atoi(key)
		case "block_build":
			var vs []string
			vs, err = some(key)
			sc.Builds.Blocked = append(sc.Builds.Blocked, vs...)
		case "min_build_date":
			sc.Builds.MinBuildDate, err = one(key)
		case "mode":
			sc.Mode, err = one(key)
		case "threat_events":
			var v string
			if v, err = one(key); err == nil {
				if sc.ThreatEvents, err = parseBool(v); err != nil {
					err = d.Errf("fusion_set %s: %s: %v", sc.ID, key, err)
				}
			}
		case "message":
			vs := d.RemainingArgs()
			if len(vs) == 0 {
				err = d.Errf("fusion_set %s: message needs a text", sc.ID)
			}
			sc.Message = strings.Join(vs, " ")
		case "status":
			sc.Status, err = atoi(key)
		case "score":
			var reason, n string
			if !d.AllArgs(&reason, &n) {
				return sc, d.Errf("fusion_set %s: score takes a reason code and a number", sc.ID)
			}
			if !threat.Reason(reason).Valid() {
				return sc, d.Errf("fusion_set %s: score: unknown reason code %q", sc.ID, reason)
			}
			v, convErr := strconv.Atoi(n)
			if convErr != nil || v < 0 {
				return sc, d.Errf("fusion_set %s: score %s: want a whole number, got %q", sc.ID, reason, n)
			}
			if sc.Scores == nil {
				sc.Scores = map[string]int{}
			}
			sc.Scores[reason] = v
		case "fail_safe":
			fs, fsErr := parseFailSafe(d, sc.ID, duration)
			if fsErr != nil {
				return sc, fsErr
			}
			sc.FailSafe = fs
		case "clone_detection":
			cd, cdErr := parseCloneDetection(d, sc.ID, duration)
			if cdErr != nil {
				return sc, cdErr
			}
			sc.CloneDetection = cd
		case "installs":
			in, inErr := parseInstalls(d, sc.ID, duration)
			if inErr != nil {
				return sc, inErr
			}
			sc.Installs = in
		case "device_header":
			var k, h string
			if !d.AllArgs(&k, &h) {
				return sc, d.Errf("fusion_set %s: device_header takes a device key and a header name", sc.ID)
			}
			if sc.DeviceHeaders == nil {
				sc.DeviceHeaders = map[string]string{}
			}
			sc.DeviceHeaders[k] = h
		default:
			return sc, d.Errf("fusion_set %s: unrecognized setting %q", sc.ID, key)
		}
		if err != nil {
			return sc, err
		}
	}
	return sc, nil
}

// parseCloneDetection reads `clone_detection { window <d>; max_addresses
// <n>; max_devices <n> }`, the fusion file's clone_detection keys
// (CompileSet checks the values as it does for the file).
func parseCloneDetection(d *caddyfile.Dispenser, id string, duration func(name, v string) (fusion.Duration, error)) (*fusion.CloneDetection, error) {
	if d.NextArg() {
		return nil, d.Errf("fusion_set %s: clone_detection takes a block, not arguments", id)
	}
	cd := new(fusion.CloneDetection)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		k := d.Val()
		var v string
		if !d.AllArgs(&v) {
			return nil, d.Errf("fusion_set %s: clone_detection %s takes one value", id, k)
		}
		var err error
		switch k {
		case "window":
			cd.Window, err = duration("clone_detection window", v)
		case "block_installs":
			if cd.BlockInstalls, err = parseBool(v); err != nil {
				err = d.Errf("fusion_set %s: clone_detection block_installs: %v", id, err)
			}
		case "max_addresses", "max_devices":
			n, convErr := strconv.Atoi(v)
			if convErr != nil || n < 0 {
				return nil, d.Errf("fusion_set %s: clone_detection %s: want a whole number, got %q", id, k, v)
			}
			if k == "max_addresses" {
				cd.MaxAddresses = n
			} else {
				cd.MaxDevices = n
			}
		default:
			return nil, d.Errf("fusion_set %s: clone_detection: unknown option %q (want window, max_addresses, max_devices or block_installs)", id, k)
		}
		if err != nil {
			return nil, err
		}
	}
	return cd, nil
}

// parseInstalls reads the installs block, the fusion file's installs keys
// (CompileSet checks the values as it does for the file).
func parseInstalls(d *caddyfile.Dispenser, id string, duration func(name, v string) (fusion.Duration, error)) (*fusion.Installs, error) {
	if d.NextArg() {
		return nil, d.Errf("fusion_set %s: installs takes a block, not arguments", id)
	}
	in := new(fusion.Installs)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		k := d.Val()
		var err error
		switch k {
		case "accept":
			if in.Accept = d.RemainingArgs(); len(in.Accept) == 0 {
				return nil, d.Errf("fusion_set %s: installs accept needs build and/or install", id)
			}
		case "max_lifetime", "lifetime":
			var v string
			if !d.AllArgs(&v) {
				return nil, d.Errf("fusion_set %s: installs %s takes one value", id, k)
			}
			dst := &in.MaxLifetime
			if k == "lifetime" {
				dst = &in.Lifetime
			}
			*dst, err = duration("installs "+k, v)
		case "enrollment":
			in.Enrollment, err = parseEnrollment(d, id, duration)
		case "attestation":
			in.Attestation, err = parseAttestation(d, id)
		default:
			return nil, d.Errf("fusion_set %s: installs: unknown option %q (want accept, max_lifetime, lifetime, enrollment or attestation)", id, k)
		}
		if err != nil {
			return nil, err
		}
	}
	return in, nil
}

// parseEnrollment reads installs' enrollment block.
func parseEnrollment(d *caddyfile.Dispenser, id string, duration func(name, v string) (fusion.Duration, error)) (*fusion.Enrollment, error) {
	if d.NextArg() {
		return nil, d.Errf("fusion_set %s: installs enrollment takes a block, not arguments", id)
	}
	e := new(fusion.Enrollment)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		k := d.Val()
		var v string
		if !d.AllArgs(&v) {
			return nil, d.Errf("fusion_set %s: installs enrollment %s takes one value", id, k)
		}
		switch k {
		case "window":
			var err error
			if e.Window, err = duration("installs enrollment window", v); err != nil {
				return nil, err
			}
		case "max_per_build", "max_per_address":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, d.Errf("fusion_set %s: installs enrollment %s: want a positive whole number, got %q", id, k, v)
			}
			if k == "max_per_build" {
				e.MaxPerBuild = n
			} else {
				e.MaxPerAddress = n
			}
		default:
			return nil, d.Errf("fusion_set %s: installs enrollment: unknown option %q (want window, max_per_build or max_per_address)", id, k)
		}
	}
	return e, nil
}

// parseAttestation reads installs' attestation block.
func parseAttestation(d *caddyfile.Dispenser, id string) (*fusion.Attestation, error) {
	if d.NextArg() {
		return nil, d.Errf("fusion_set %s: installs attestation takes a block, not arguments", id)
	}
	a := new(fusion.Attestation)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		k := d.Val()
		vs := d.RemainingArgs()
		if len(vs) == 0 {
			return nil, d.Errf("fusion_set %s: installs attestation %s needs a value", id, k)
		}
		one := func(dst *string) error {
			if len(vs) != 1 {
				return d.Errf("fusion_set %s: installs attestation %s takes one value", id, k)
			}
			*dst = vs[0]
			return nil
		}
		var err error
		switch k {
		case "mode":
			err = one(&a.Mode)
		case "min_security_level":
			err = one(&a.MinSecurityLevel)
		case "packages":
			a.Packages = append(a.Packages, vs...)
		case "signing_cert_digests":
			a.SigningCertDigests = append(a.SigningCertDigests, vs...)
		default:
			return nil, d.Errf("fusion_set %s: installs attestation: unknown option %q (want mode, packages, signing_cert_digests or min_security_level)", id, k)
		}
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

// parseFailSafe reads `fail_safe <threshold> [window <d>] [duration <d>]` or
// its block form.
func parseFailSafe(d *caddyfile.Dispenser, id string, duration func(name, v string) (fusion.Duration, error)) (*fusion.FailSafe, error) {
	fs := new(fusion.FailSafe)
	set := func(k, v string) error {
		var err error
		switch k {
		case "threshold":
			n, convErr := strconv.Atoi(v)
			if convErr != nil || n <= 0 {
				return d.Errf("fusion_set %s: fail_safe threshold: want a positive whole number, got %q", id, v)
			}
			fs.Threshold = n
		case "window":
			fs.Window, err = duration("fail_safe window", v)
		case "duration":
			fs.Duration, err = duration("fail_safe duration", v)
		case "ipv4_prefix", "ipv6_prefix":
			n, convErr := strconv.Atoi(v)
			if convErr != nil || n <= 0 {
				return d.Errf("fusion_set %s: fail_safe %s: want a prefix length, got %q", id, k, v)
			}
			if k == "ipv4_prefix" {
				fs.IPv4Prefix = n
			} else {
				fs.IPv6Prefix = n
			}
		default:
			return d.Errf("fusion_set %s: fail_safe: unknown option %q (want threshold, window, duration, subjects, ipv4_prefix or ipv6_prefix)", id, k)
		}
		return err
	}
	args := d.RemainingArgs()
	if len(args) > 0 {
		if err := set("threshold", args[0]); err != nil {
			return nil, err
		}
		rest := args[1:]
		for len(rest) > 0 {
			if len(rest) < 2 {
				return nil, d.Errf("fusion_set %s: fail_safe %s needs a value", id, rest[0])
			}
			if rest[0] == "threshold" {
				return nil, d.Errf("fusion_set %s: fail_safe threshold given twice", id)
			}
			if err := set(rest[0], rest[1]); err != nil {
				return nil, err
			}
			rest = rest[2:]
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		k := d.Val()
		if k == "subjects" {
			// The same names and rules as the fusion file's
			// fail_safe.subjects; CompileSet validates them.
			if fs.Subjects = d.RemainingArgs(); len(fs.Subjects) == 0 {
				return nil, d.Errf("fusion_set %s: fail_safe subjects needs address, device and/or certificate", id)
			}
			continue
		}
		var v string
		if !d.AllArgs(&v) {
			return nil, d.Errf("fusion_set %s: fail_safe %s takes one value", id, k)
		}
		if err := set(k, v); err != nil {
			return nil, err
		}
	}
	if fs.Threshold == 0 {
		return nil, d.Errf("fusion_set %s: fail_safe needs a threshold", id)
	}
	return fs, nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "on", "true", "yes":
		return true, nil
	case "off", "false", "no":
		return false, nil
	}
	return false, fmt.Errorf("want on|off or true|false, got %q", v)
}

// workingDir is the base for relative paths in inline fusion sets: Caddy
// resolves every other relative path in its config against it too.
func workingDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	return wd
}
