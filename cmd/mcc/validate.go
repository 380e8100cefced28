package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/xds/gateway"
)

// runValidate checks a fusion set file the way every reader loads it:
// strictly, with every referenced CA, CRL and revocation file read, and its
// gateway section (if any) as `mcc xds` decodes it, and the freshness of
// its CRLs (expired: a problem; stale soon: a warning). Each problem is
// printed on its own line as FILE:LINE: FIELD: MSG.
func runValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", "validate FILE", stderr)
	files, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(files) != 1 {
		return usageError(fs, "want exactly one fusion set file")
	}
	path := files[0]

	var problems []string
	cfg, gs, err := fusion.LoadFileWithGateway(path)
	if err != nil {
		var le *fusion.LoadError
		if !errors.As(err, &le) {
			return err
		}
		for _, p := range le.Problems {
			problems = append(problems, p.Error())
		}
	}
	problems = append(problems, gatewayProblems(gs)...)
	// An expired CRL loads (the gateways then refuse every certificate it
	// covers), so it is a problem here; one in the last quarter of its
	// validity is a warning.
	var warnings []string
	if cfg != nil {
		expired, soon := cfg.CRLProblems(time.Now())
		for _, p := range expired {
			problems = append(problems, p.Error())
		}
		for _, p := range soon {
			warnings = append(warnings, p.Error())
		}
	}
	for _, w := range warnings {
		fmt.Fprintln(stdout, w)
	}

	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stdout, p)
		}
		if len(problems) == 1 {
			return fmt.Errorf("%s: 1 problem", path)
		}
		return fmt.Errorf("%s: %d problems", path, len(problems))
	}
	if len(cfg.IDs) == 1 {
		fmt.Fprintln(stdout, "ok: 1 fusion set")
	} else {
		fmt.Fprintf(stdout, "ok: %d fusion sets\n", len(cfg.IDs))
	}
	return nil
}

// gatewayProblems decodes the file's gateway section, when it has one, as
// `mcc xds` does, from the node the fusion loader returned: the file is read
// and parsed once. Set references are checked against the ids the file
// declares, even when those sets have problems of their own.
func gatewayProblems(gs *fusion.GatewaySection) []string {
	if gs == nil || gs.Node == nil {
		return nil
	}
	_, err := gateway.Decode(gs.Node, gateway.Options{File: gs.File, BaseDir: gs.BaseDir, FusionSet: gs.HasSet})
	var ge *gateway.Error
	if !errors.As(err, &ge) {
		if err != nil {
			return []string{fmt.Sprintf("%s: gateway: %v", gs.File, err)}
		}
		return nil
	}
	out := make([]string, len(ge.Problems))
	for i, p := range ge.Problems {
		out[i] = p.Error()
	}
	return out
}
