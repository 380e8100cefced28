package main

import (
	"flag"
	"strings"

	"github.com/mccgate/mcc/server/client"
)

// remoteFlags switch a PKI command (issue, revoke, certify verify) from
// the local CA directory to mcc server's API: a pipeline changes one flag
// (--ca DIR becomes --server URL --token-file F), not its scripts.
type remoteFlags struct {
	server, tokenFile, serverCA string
}

func (r *remoteFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.server, "server", "", "mcc server `URL` (https://..., or http:// on loopback): do this over the API instead of with --ca")
	fs.StringVar(&r.tokenFile, "token-file", "", "`file` holding the API token (with --server; never pass the token itself as a flag)")
	fs.StringVar(&r.serverCA, "server-ca", "", "PEM `file` of the CA that signs the server's TLS certificate (default: the system roots)")
}

// on reports whether the command runs against a server.
func (r *remoteFlags) on() bool { return r.server != "" }

// check refuses a mix of local and remote flags: names holds the local-only
// flags of the command, which must be empty with --server.
func (r *remoteFlags) check(fs *flag.FlagSet, localOnly ...string) error {
	if !r.on() {
		for _, n := range []string{"token-file", "server-ca"} {
			if fs.Lookup(n).Value.String() != "" {
				return usageError(fs, "--%s needs --server", n)
			}
		}
		return nil
	}
	for _, n := range localOnly {
		if f := fs.Lookup(n); f != nil && f.Value.String() != f.DefValue {
			return usageError(fs, "--%s is for the local mode; with --server the server decides it", n)
		}
	}
	return requireFlags(fs, "token-file")
}

// client builds the API client.
func (r *remoteFlags) client() (*client.Client, error) {
	return client.New(client.Options{
		Server:    r.server,
		TokenFile: r.tokenFile,
		CAFile:    r.serverCA,
		UserAgent: "mcc-cli/" + strings.Fields(versionString())[1],
	})
}
