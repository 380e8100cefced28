package caddymod

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mccgate/mcc/fusion/fusiontest"
)

// TestAdaptInstallsErrors: the installs block and clone_detection's
// block_installs refuse what they cannot read, and the compiled set's
// problems (the fusion file's rules) come with the Caddyfile line.
func TestAdaptInstallsErrors(t *testing.T) {
	corp := fusiontest.NewCorpus(t, "bank-prod", "com.example.bank")
	set := func(body string) string {
		return fmt.Sprintf("{\n\tmcc {\n\t\tfusion_set a {\n\t\t\ttrusted_ca %s\n\t\t\tapp_id x\n\t\t\tmode defense\n%s\n\t\t}\n\t}\n}\n:8443 {\n\trespond ok\n}\n", corp.CAFile, body)
	}
	tests := []struct {
		name, body, want string
	}{
		{"installs arguments", "\t\t\tinstalls install {\n\t\t\t}", "installs takes a block, not arguments"},
		{"installs unknown", "\t\t\tinstalls {\n\t\t\t\tkinds install\n\t\t\t}", `installs: unknown option "kinds"`},
		{"accept empty", "\t\t\tinstalls {\n\t\t\t\taccept\n\t\t\t}", "installs accept needs build and/or install"},
		{"accept bad kind", "\t\t\tinstalls {\n\t\t\t\taccept device\n\t\t\t}", `installs.accept[0]: "device": want build or install, at Caddyfile:3`},
		{"max_lifetime two values", "\t\t\tinstalls {\n\t\t\t\tmax_lifetime 1d 2d\n\t\t\t}", "installs max_lifetime takes one value"},
		{"lifetime bad", "\t\t\tinstalls {\n\t\t\t\tlifetime soon\n\t\t\t}", "installs lifetime"},
		{"lifetime over max", "\t\t\tinstalls {\n\t\t\t\tmax_lifetime 1d\n\t\t\t\tlifetime 2d\n\t\t\t}", "longer than installs.max_lifetime"},
		{"enrollment count", "\t\t\tinstalls {\n\t\t\t\tenrollment {\n\t\t\t\t\tmax_per_build 0\n\t\t\t\t}\n\t\t\t}", "installs enrollment max_per_build: want a positive whole number"},
		{"enrollment unknown", "\t\t\tinstalls {\n\t\t\t\tenrollment {\n\t\t\t\t\tper_day 5\n\t\t\t\t}\n\t\t\t}", `installs enrollment: unknown option "per_day"`},
		{"attestation unknown", "\t\t\tinstalls {\n\t\t\t\tattestation {\n\t\t\t\t\troots a.pem\n\t\t\t\t}\n\t\t\t}", `installs attestation: unknown option "roots"`},
		{"attestation two modes", "\t\t\tinstalls {\n\t\t\t\tattestation {\n\t\t\t\t\tmode on off\n\t\t\t\t}\n\t\t\t}", "installs attestation mode takes one value"},
		{"attestation bad digest", "\t\t\tinstalls {\n\t\t\t\tattestation {\n\t\t\t\t\tmode required\n\t\t\t\t\tpackages x\n\t\t\t\t\tsigning_cert_digests 12zz\n\t\t\t\t}\n\t\t\t}", "installs.attestation.signing_cert_digests[0]"},
		{"block_installs bad", "\t\t\tclone_detection {\n\t\t\t\tmax_addresses 5\n\t\t\t\tblock_installs maybe\n\t\t\t}", "clone_detection block_installs: want on|off"},
		{"block_installs without fail_safe", "\t\t\tclone_detection {\n\t\t\t\tmax_addresses 5\n\t\t\t\tblock_installs on\n\t\t\t}", "clone_detection.block_installs: needs fail_safe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := adapt(t, set(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("adapt error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	// The same block with good values adapts.
	if _, err := adapt(t, set("\t\t\tfail_safe 50\n\t\t\tclone_detection {\n\t\t\t\tmax_addresses 5\n\t\t\t\tblock_installs on\n\t\t\t}\n\t\t\tinstalls {\n\t\t\t\taccept install build\n\t\t\t\tmax_lifetime 7d\n\t\t\t}")); err != nil {
		t.Fatalf("good installs block: %v", err)
	}
}
