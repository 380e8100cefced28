package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mccgate/mcc/fusion"
	"github.com/mccgate/mcc/pki/certid"
	"github.com/mccgate/mcc/threat"
	"github.com/mccgate/mcc/threat/storeurl"
)

var banSubcommands = [][2]string{
	{"list", "list the live fail-safe bans in a shared store"},
	{"lift", "lift a fail-safe ban (address, device id or certificate)"},
}

// banTimeout bounds one `mcc ban` command against the store.
const banTimeout = 30 * time.Second

// runBan dispatches `mcc ban <subcommand>`.
func runBan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		subcommandUsage(stderr, "ban", banSubcommands)
		return errUsage
	}
	switch {
	case isHelp(args[0]):
		subcommandUsage(stdout, "ban", banSubcommands)
		return nil
	case args[0] == "list":
		return runBanList(ctx, args[1:], stdout, stderr)
	case args[0] == "lift":
		return runBanLift(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "mcc ban: unknown subcommand %q (see mcc ban --help)\n", args[0])
	return errUsage
}

const (
	storeFlagHelp  = "the gateways' shared store: a redis:// or rediss:// URL (placeholders {env.NAME} and {file.PATH} are expanded, so the password need not be on the command line)"
	fusionFlagHelp = "instead of --store: the fusion set file whose store key names the store"
)

// storeSetting returns the store setting of --store or --fusion (exactly
// one), placeholders expanded.
func storeSetting(fs *flag.FlagSet, store, fusionFile string) (string, error) {
	switch {
	case store != "" && fusionFile != "":
		return "", usageError(fs, "give --store or --fusion, not both")
	case store == "" && fusionFile == "":
		return "", usageError(fs, "--store (or --fusion) is required")
	case store != "":
		s := strings.TrimSpace(store)
		if s == "" || s == storeurl.Memory {
			return s, nil
		}
		expanded, err := fusion.ExpandSecret(s, ".")
		if err != nil {
			return "", fmt.Errorf("--store: %w", err)
		}
		return expanded, nil
	}
	cfg, err := fusion.LoadFile(fusionFile)
	if err != nil {
		return "", err
	}
	return cfg.StoreURL(), nil
}

func runBanList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ban list", "ban list (--store URL | --fusion FILE) [--fusion-set ID] [--json]", stderr)
	storeArg := fs.String("store", "", storeFlagHelp)
	fusionFile := fs.String("fusion", "", fusionFlagHelp)
	setID := fs.String("fusion-set", "", "only the bans of this fusion set (default: every set)")
	asJSON := fs.Bool("json", false, "print one JSON object per ban")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	setting, err := storeSetting(fs, *storeArg, *fusionFile)
	if err != nil {
		return err
	}
	if *setID != "" {
		if err := certid.CheckSetID(*setID); err != nil {
			return usageError(fs, "--fusion-set: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, banTimeout)
	defer cancel()
	admin, closeStore, err := openBanStore(ctx, setting)
	if err != nil {
		return err
	}
	defer closeStore()
	bans, err := admin.Bans(ctx, *setID)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, b := range bans {
			if err := enc.Encode(banJSON(b)); err != nil {
				return err
			}
		}
		return nil
	}
	if len(bans) == 0 {
		if *setID != "" {
			fmt.Fprintf(stdout, "no live bans in fusion set %s\n", *setID)
		} else {
			fmt.Fprintln(stdout, "no live bans")
		}
		return nil
	}
	printBans(stdout, bans)
	return nil
}

func runBanLift(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ban lift", "ban lift (--store URL | --fusion FILE) --fusion-set ID (--address A | --device D | --cert SHA256)", stderr)
	storeArg := fs.String("store", "", storeFlagHelp)
	fusionFile := fs.String("fusion", "", fusionFlagHelp)
	setID := fs.String("fusion-set", "", "the fusion set of the ban (required)")
	address := fs.String("address", "", "a client address or prefix: lifts every banned address or prefix it overlaps (an address lifts the /64 it lies in)")
	device := fs.String("device", "", "a device id, exactly as listed")
	cert := fs.String("cert", "", "a certificate's SHA-256 (hex, \"sha256:\" optional)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	setting, err := storeSetting(fs, *storeArg, *fusionFile)
	if err != nil {
		return err
	}
	if err := requireFlags(fs, "fusion-set"); err != nil {
		return err
	}
	if err := certid.CheckSetID(*setID); err != nil {
		return usageError(fs, "--fusion-set: %v", err)
	}
	var kind threat.SubjectKind
	var value string
	n := 0
	if *address != "" {
		n++
		kind, value = threat.SubjectAddress, strings.TrimSpace(*address)
		if _, ok := threat.ParseAddressValue(value); !ok {
			return usageError(fs, "--address %q is not an IP address or a prefix (192.0.2.7, 2001:db8:1:2::/64)", truncateArg(value))
		}
	}
	if *device != "" {
		n++
		kind, value = threat.SubjectDevice, *device
	}
	if *cert != "" {
		n++
		v := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(*cert), "sha256:"))
		if b, err := hex.DecodeString(v); err != nil || len(b) != 32 {
			return usageError(fs, "--cert %q is not a SHA-256 in hex (64 characters, as `mcc ban list` shows it)", truncateArg(*cert))
		}
		kind, value = threat.SubjectCertificate, v
	}
	if n != 1 {
		return usageError(fs, "give exactly one of --address, --device and --cert")
	}
	ctx, cancel := context.WithTimeout(ctx, banTimeout)
	defer cancel()
	admin, closeStore, err := openBanStore(ctx, setting)
	if err != nil {
		return err
	}
	defer closeStore()
	lifted, err := admin.Lift(ctx, *setID, kind, value)
	if err != nil {
		return err
	}
	if len(lifted) == 0 {
		return fmt.Errorf("no live ban of %s %s in fusion set %s: nothing lifted (`mcc ban list --store ... --fusion-set %s` shows the live bans)", kind, value, *setID, *setID)
	}
	fmt.Fprintf(stdout, "lifted %d ban(s); their scores are cleared too:\n", len(lifted))
	printBans(stdout, lifted)
	return nil
}

// openBanStore opens the store a `mcc ban` command works on (setting has
// its placeholders expanded). Only a shared store can be.
func openBanStore(ctx context.Context, setting string) (threat.BanAdmin, func(), error) {
	admin, closeStore, err := storeurl.OpenBanAdmin(ctx, setting, nil)
	if err != nil {
		return nil, nil, err
	}
	return admin, func() { _ = closeStore() }, nil
}

func printBans(w io.Writer, bans []threat.Ban) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FUSION SET\tSUBJECT\tVALUE\tUNTIL\tREMAINING\tSCORE")
	now := time.Now()
	for _, b := range bans {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", b.Set, b.Kind, b.Value,
			b.Until.UTC().Format(time.RFC3339), b.Until.Sub(now).Round(time.Second), b.Score)
	}
	_ = tw.Flush()
}

type banLine struct {
	FusionSet string    `json:"fusion_set"`
	Subject   string    `json:"subject"`
	Value     string    `json:"value"`
	Until     time.Time `json:"until"`
	Score     int       `json:"score"`
}

func banJSON(b threat.Ban) banLine {
	return banLine{FusionSet: b.Set, Subject: b.Kind.String(), Value: b.Value, Until: b.Until.UTC(), Score: b.Score}
}

// truncateArg shortens a bad argument for an error message.
func truncateArg(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
