package fusion

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Secrets in the fusion set file (the store URL with its password) need
// never be written in it: a value may hold placeholders, expanded when the
// file is loaded, as in Caddy's config:
//
//	{env.NAME}   the environment variable NAME (unset or empty is an error)
//	{file.PATH}  the contents of the file PATH, relative to the fusion set
//	             file's directory, one trailing newline removed
//
// The expanded value is inserted as is: inside a URL, a password with
// characters such as '@', ':' or '/' must be percent-encoded in its file
// (or the whole URL kept in the variable or file). Config.File keeps the
// placeholder text, so anything that prints or serves the loaded file
// shows the placeholder, never the secret; errors name the key, the line
// and the placeholder, never the value.

// maxSecretFileSize bounds a {file.PATH} placeholder's file.
const maxSecretFileSize = 64 << 10

var rePlaceholder = regexp.MustCompile(`\{(env|file)\.([^{}]*)\}`)

// ExpandSecret expands the {env.NAME} and {file.PATH} placeholders of v;
// relative paths resolve against baseDir. Text outside placeholders is
// kept as is. Errors never contain an expanded value.
func ExpandSecret(v, baseDir string) (string, error) {
	if !strings.Contains(v, "{") {
		return v, nil
	}
	var errs []error
	out := rePlaceholder.ReplaceAllStringFunc(v, func(ph string) string {
		m := rePlaceholder.FindStringSubmatch(ph)
		kind, name := m[1], m[2]
		if name == "" {
			errs = append(errs, fmt.Errorf("placeholder %s names nothing", ph))
			return ""
		}
		switch kind {
		case "env":
			val, ok := os.LookupEnv(name)
			if !ok {
				errs = append(errs, fmt.Errorf("placeholder %s: environment variable %s is not set", ph, name))
			} else if val == "" {
				errs = append(errs, fmt.Errorf("placeholder %s: environment variable %s is empty", ph, name))
			}
			return val
		default:
			path := absPath(baseDir, name)
			data, err := readLimited(path, maxSecretFileSize)
			if err != nil {
				// readLimited's errors name the file, never its contents.
				errs = append(errs, fmt.Errorf("placeholder %s: %v", ph, err))
				return ""
			}
			val := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
			if val == "" {
				errs = append(errs, fmt.Errorf("placeholder %s: file %s is empty", ph, path))
			}
			return val
		}
	})
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	return out, nil
}

// configSecrets holds a loaded file's expanded secrets. Config holds it by
// pointer so that printing a Config (%+v) shows an address, not the values.
type configSecrets struct {
	store string
}

// StoreURL returns the store setting with its placeholders expanded: what
// to pass to storeurl.Open. Config.File.Store keeps the text as written,
// for display.
func (c *Config) StoreURL() string {
	if c.secrets == nil {
		return c.File.Store
	}
	return c.secrets.store
}
