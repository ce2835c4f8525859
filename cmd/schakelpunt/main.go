// Command schakelpunt is the switching point's binary: serve runs it, ca
// is the development and test PKI. Wiring only: the work is done in the
// packages it calls.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "schakelpunt:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

const usage = `usage: schakelpunt <command> [flags]

commands:
  serve     run the switching point
  ca        the development and test PKI (init, issue, revoke)
  source    a reference source FHIR server (a GP or pharmacy system) over mutual TLS
  audit     verify the access log's hash chain (audit verify), or report on a month (audit report)
  validate  validate FHIR JSON files against the base spec and our profiles
  patient-token  print a patient token of the development issuer (--data-dir DIR --bsn BSN [--ttl 1h])
  version   print the version

Run 'schakelpunt <command> -h' for a command's flags.
`

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitError{code: 2, err: errors.New("no command given")}
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr, getenv)
	case "ca":
		return caCommand(args[1:], stdout, stderr)
	case "source":
		return sourceCommand(ctx, args[1:], stderr, getenv)
	case "validate":
		return validateCommand(ctx, args[1:], stdout, stderr)
	case "audit":
		return auditCommand(ctx, args[1:], stdout, stderr, getenv)
	case "patient-token":
		return patientTokenCommand(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "schakelpunt", version)
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return &exitError{code: 2, err: fmt.Errorf("unknown command %q", args[0])}
}
