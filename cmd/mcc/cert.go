package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/mccgate/mcc/pki"
)

var certSubcommands = [][2]string{
	{"create", "issue a control-channel certificate (mTLS for mcc xds, mcc authz, Envoy)"},
}

// runCert dispatches `mcc cert <subcommand>`.
func runCert(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		subcommandUsage(stderr, "cert", certSubcommands)
		return errUsage
	}
	switch {
	case isHelp(args[0]):
		subcommandUsage(stdout, "cert", certSubcommands)
		return nil
	case args[0] == "create":
		return runCertCreate(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "mcc cert: unknown subcommand %q (see mcc cert --help)\n", args[0])
	return errUsage
}

// repeatedFlag is a repeatable string flag (--dns a --dns b).
type repeatedFlag []string

func (l *repeatedFlag) String() string { return strings.Join(*l, ",") }
func (l *repeatedFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}

func runCertCreate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("cert create",
		"cert create --ca DIR --name NAME [--dns H]... [--ip A]... [--uri U]... (--server|--client) --out cert.pem --key-out key.pem [--days N]", stderr)
	caDir := fs.String("ca", "", "control CA directory (mcc ca init --dir DIR; not the CA of your app builds)")
	name := fs.String("name", "", "certificate common name, e.g. mcc-xds or envoy-edge")
	var dns, ips, uris repeatedFlag
	fs.Var(&dns, "dns", "DNS name SAN (repeatable); a server certificate needs --dns or --ip")
	fs.Var(&ips, "ip", "IP address SAN (repeatable)")
	fs.Var(&uris, "uri", "URI SAN (repeatable), e.g. spiffe://mcc/envoy/mcc-edge")
	server := fs.Bool("server", false, "server certificate (EKU serverAuth): mcc xds, mcc authz")
	client := fs.Bool("client", false, "client certificate (EKU clientAuth): Envoy towards mcc xds and mcc authz")
	out := fs.String("out", "", "certificate file to write (PEM, 0644)")
	keyOut := fs.String("key-out", "", "private key file to write (PEM, 0600)")
	days := fs.Int("days", int(pki.DefaultControlValidity/(24*time.Hour)), "validity in days")
	force := fs.Bool("force", false, "replace existing --out and --key-out files (renewal)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireFlags(fs, "ca", "name", "out", "key-out"); err != nil {
		return err
	}
	if *server == *client {
		return usageError(fs, "give exactly one of --server and --client")
	}
	if *days <= 0 {
		return usageError(fs, "--days must be positive")
	}
	if *days > 3650 {
		return usageError(fs, "--days %d is more than 10 years; control certificates should be short-lived", *days)
	}
	req := pki.ControlRequest{Name: *name, DNS: dns, URIs: uris, Usage: pki.ControlClient, ValidFor: time.Duration(*days) * 24 * time.Hour}
	if *server {
		req.Usage = pki.ControlServer
		if len(dns)+len(ips) == 0 {
			return usageError(fs, "--server needs at least one --dns or --ip (clients check the host they dial against them)")
		}
	}
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return usageError(fs, "--ip %q is not an IP address", s)
		}
		req.IPs = append(req.IPs, ip)
	}
	if err := pki.CheckControlOutputs(*out, *keyOut, *force); err != nil {
		return err
	}
	ca, err := pki.LoadCA(*caDir)
	if err != nil {
		return err
	}
	cc, err := ca.IssueControlCert(req)
	if err != nil {
		return err
	}
	if err := cc.WriteFiles(*out, *keyOut, *force); err != nil {
		return err
	}
	c := cc.Cert
	fmt.Fprintf(stdout, "issued %s certificate %q: serial %s, sha256 %s, valid until %s\n",
		req.Usage, c.Subject.CommonName, pki.FormatSerial(c.SerialNumber), pki.Fingerprint(c.Raw), c.NotAfter.UTC().Format(time.RFC3339))
	if sans := sanList(cc); sans != "" {
		fmt.Fprintf(stdout, "  SANs: %s\n", sans)
	}
	fmt.Fprintf(stdout, "  %-40s certificate\n", describeFile(*out, false))
	fmt.Fprintf(stdout, "  %-40s private key\n", describeFile(*keyOut, true))
	fmt.Fprintf(stdout, "  peers trust %s\n", filepath.Join(ca.Dir, pki.CACertFile))
	return nil
}

func sanList(cc *pki.ControlCert) string {
	var parts []string
	for _, d := range cc.Cert.DNSNames {
		parts = append(parts, "DNS:"+d)
	}
	for _, ip := range cc.Cert.IPAddresses {
		parts = append(parts, "IP:"+ip.String())
	}
	for _, u := range cc.Cert.URIs {
		parts = append(parts, "URI:"+u.String())
	}
	return strings.Join(parts, ", ")
}
