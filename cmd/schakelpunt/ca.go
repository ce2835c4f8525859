package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/access/pki"
)

const caUsage = `usage:
  schakelpunt ca init   --dir DIR
  schakelpunt ca issue  --dir DIR --type Z|N|M|S --uzi NUMBER --ura NUMBER [--role RR.SSS] [--agb NUMBER]
                        [--name CN] [--dns HOST|IP]... --out PREFIX
  schakelpunt ca issue  --dir DIR --dns HOST|IP... --out PREFIX        (a plain server certificate)
  schakelpunt ca revoke --dir DIR --serial HEX
`

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func caCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, caUsage)
		return &exitError{code: 2, err: errors.New("ca: no subcommand")}
	}
	fs := flag.NewFlagSet("ca "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "CA directory (ca.crt, ca.key, crl.pem)")
	usageErr := func(err error) error { return &exitError{code: 2, err: err} }
	switch args[0] {
	case "init":
		if err := fs.Parse(args[1:]); err != nil {
			return usageErr(err)
		}
		if *dir == "" {
			return usageErr(errors.New("ca init: --dir is required"))
		}
		if _, err := pki.Init(*dir); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "CA written to %s/ca.crt and %s/ca.key\n", *dir, *dir)
		return nil
	case "issue":
		var req pki.IssueRequest
		var dns multi
		card := fs.String("type", "", "card type: Z (professional), N or M (employee), S (server/system); empty: plain server certificate")
		fs.StringVar(&req.UZI, "uzi", "", "UZI number")
		fs.StringVar(&req.URA, "ura", "", "URA (subscriber number) of the organisation")
		fs.StringVar(&req.Role, "role", "", "role code RR.SSS (00.000 for N, M, S)")
		fs.StringVar(&req.AGB, "agb", "", "AGB code")
		fs.StringVar(&req.Name, "name", "", "subject common name")
		fs.Var(&dns, "dns", "DNS name or IP address (repeatable)")
		out := fs.String("out", "", "output prefix: writes PREFIX.crt and PREFIX.key")
		if err := fs.Parse(args[1:]); err != nil {
			return usageErr(err)
		}
		if *dir == "" || *out == "" {
			return usageErr(errors.New("ca issue: --dir and --out are required"))
		}
		req.CardType = access.CardType(strings.ToUpper(*card))
		req.DNS = dns
		ca, err := pki.Load(*dir)
		if err != nil {
			return err
		}
		certPEM, keyPEM, serial, err := ca.Issue(req)
		if err != nil {
			return usageErr(err)
		}
		if err := pki.WriteFiles(*out, certPEM, keyPEM); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "issued %s.crt and %s.key, serial=%s\n", *out, *out, pki.FormatSerial(serial))
		return nil
	case "revoke":
		serial := fs.String("serial", "", "serial number in hex, as openssl x509 -serial prints it")
		if err := fs.Parse(args[1:]); err != nil {
			return usageErr(err)
		}
		if *dir == "" || *serial == "" {
			return usageErr(errors.New("ca revoke: --dir and --serial are required"))
		}
		n, err := pki.ParseSerial(*serial)
		if err != nil {
			return usageErr(err)
		}
		if err := pki.Revoke(*dir, n); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked serial=%s in %s/crl.pem\n", pki.FormatSerial(n), *dir)
		return nil
	}
	fmt.Fprint(stderr, caUsage)
	return &exitError{code: 2, err: fmt.Errorf("ca: unknown subcommand %q", args[0])}
}
