package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/schakelpunt/schakelpunt/access/mtls"
	"github.com/schakelpunt/schakelpunt/federation/source"
)

// sourceConfig is the configuration of `schakelpunt source`: flags, each
// with a SCHAKELPUNT_SOURCE_* environment variable; flags win.
type sourceConfig struct {
	Listen, Data, TLSCert, TLSKey, ClientCA, BaseURL, LogLevel string
}

func parseSourceFlags(args []string, stderr io.Writer, getenv func(string) string) (*sourceConfig, error) {
	env := func(name, def string) string {
		if v := getenv("SCHAKELPUNT_SOURCE_" + name); v != "" {
			return v
		}
		return def
	}
	c := &sourceConfig{}
	fs := flag.NewFlagSet("source", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: schakelpunt source --listen ADDR --data DIR --tls-cert F --tls-key F --client-ca F\n\n"+
			"A reference source FHIR server: serves the FHIR JSON files in DIR at /fhir/R4 over mutual TLS.")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Listen, "listen", env("LISTEN", "127.0.0.1:9101"), "address to listen on (env SCHAKELPUNT_SOURCE_LISTEN)")
	fs.StringVar(&c.Data, "data", env("DATA", ""), "directory of FHIR JSON files: resources, or Bundles (env SCHAKELPUNT_SOURCE_DATA)")
	fs.StringVar(&c.TLSCert, "tls-cert", env("TLS_CERT", ""), "server certificate, PEM (env SCHAKELPUNT_SOURCE_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", env("TLS_KEY", ""), "server key, PEM (env SCHAKELPUNT_SOURCE_TLS_KEY)")
	fs.StringVar(&c.ClientCA, "client-ca", env("CLIENT_CA", ""), "CA certificates whose client certificates may connect, PEM (env SCHAKELPUNT_SOURCE_CLIENT_CA)")
	fs.StringVar(&c.BaseURL, "base-url", env("BASE_URL", ""), "public base URL of the FHIR API for fullUrls (default https://<Host>/fhir/R4) (env SCHAKELPUNT_SOURCE_BASE_URL)")
	fs.StringVar(&c.LogLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (env SCHAKELPUNT_SOURCE_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("source: unexpected argument %q", fs.Arg(0))
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"--data", c.Data}, {"--tls-cert", c.TLSCert}, {"--tls-key", c.TLSKey}, {"--client-ca", c.ClientCA}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("source: missing %v", missing)
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("source: --log-level: %w", err)
	}
	return c, nil
}

// sourceCommand: schakelpunt source (DESIGN.md section 8). It serves until
// ctx ends, then shuts down gracefully.
func sourceCommand(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	cfg, err := parseSourceFlags(args, stderr, getenv)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	log := newLogger(stderr, cfg.LogLevel)
	data, err := source.Load(cfg.Data)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return fmt.Errorf("source: --tls-cert/--tls-key: %w", err)
	}
	cas, err := mtls.LoadCertificates(cfg.ClientCA)
	if err != nil {
		return fmt.Errorf("source: --client-ca: %w", err)
	}
	srv, err := source.NewServer(data, source.Options{Certificate: cert, ClientCAs: cas, BaseURL: cfg.BaseURL, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	base := cfg.BaseURL
	if base == "" {
		base = "https://" + ln.Addr().String() + source.BasePath
	}
	log.Info("source serving", slog.String("base", base), slog.String("data", cfg.Data),
		slog.Int("resources", data.Len()), slog.Int("patients", len(data.Patients())))
	err = srv.Serve(ctx, ln)
	if err == nil || errors.Is(err, context.Canceled) {
		log.Info("source stopped")
		return nil
	}
	return err
}
