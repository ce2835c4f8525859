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
	"net/http"
	"path/filepath"
	"time"

	"github.com/schakelpunt/schakelpunt/access/patienttoken"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/routing"
)

// patientListener is the app's third listener, for patients.
type patientListener struct {
	patient   *http.Server // nil when off
	patientLn net.Listener
}

// patientIssuerDir is where serve keeps the development patient issuer.
func patientIssuerDir(dataDir string) string { return filepath.Join(dataDir, "patient-issuer") }

// patientVerifier trusts the configured issuer, or else the development
// issuer under DATA/patient-issuer (created when absent), and says so.
func (a *app) patientVerifier(ctx context.Context) (*patienttoken.Verifier, error) {
	p := a.cfg.Patient
	if p.Issuer != "" {
		v, err := patienttoken.New(ctx, patienttoken.Config{Issuer: p.Issuer, Audience: p.Audience, JWKS: p.JWKS, Logger: a.log})
		if err != nil {
			return nil, fmt.Errorf("patient token issuer: %w", err)
		}
		return v, nil
	}
	dir := patientIssuerDir(a.cfg.DataDir)
	dev, created, err := patienttoken.OpenDevIssuer(dir, true)
	if err != nil {
		return nil, err
	}
	verb := "using"
	if created {
		verb = "created"
	}
	a.log.Warn("NO PATIENT TOKEN ISSUER CONFIGURED: "+verb+" a DEVELOPMENT issuer; anyone with the data directory can sign in as any patient",
		slog.String("dir", dir))
	v, err := patienttoken.New(ctx, patienttoken.Config{Issuer: patienttoken.DevIssuer, Audience: patienttoken.DevAudience, JWKS: dev.JWKSPath(), Logger: a.log})
	if err != nil {
		return nil, fmt.Errorf("development patient issuer: %w", err)
	}
	return v, nil
}

// startPatient opens the patient listener: HTTPS with the public
// listener's server certificate, no client certificate asked, serving
// the patient's FHIR API and the portal. An empty patient_listen leaves
// it off.
func (a *app) startPatient(ctx context.Context, base routing.PatientConfig, publicTLS *tls.Config) error {
	if a.cfg.PatientListen == "" {
		a.log.Info("patient listener off (patient_listen is empty)")
		return nil
	}
	v, err := a.patientVerifier(ctx)
	if err != nil {
		return err
	}
	base.Verifier = v
	base.Portal = a.portalConfig()
	handler, err := routing.NewPatient(base)
	if err != nil {
		return err
	}
	if a.patientLn, err = net.Listen("tcp", a.cfg.PatientListen); err != nil {
		return fmt.Errorf("patient listener: %w", err)
	}
	tlsConf := &tls.Config{
		Certificates: publicTLS.Certificates,
		ClientAuth:   tls.NoClientCert,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	a.patient = newFHIRServer(handler, tlsConf, slog.NewLogLogger(a.log.Handler(), slog.LevelWarn))
	go func() { a.served <- a.patient.Serve(tls.NewListener(a.patientLn, tlsConf)) }()
	a.log.Info("patient listener serving",
		slog.String("fhir", "https://"+a.PatientAddr()+routing.BasePath),
		slog.String("portal", "https://"+a.PatientAddr()+"/portal/"))
	return nil
}

// printPatientNotes tells a newcomer how to sign in as a patient when
// the development issuer is in use.
func (a *app) printPatientNotes(out io.Writer) {
	if a.patient == nil || a.cfg.Patient.Issuer != "" {
		return
	}
	// A BSN is printed only for the demo's fixture patients: the notes
	// share their stream with the log, which never names a patient.
	bsn := "<BSN>"
	if a.cfg.Demo {
		bsn = "999911120"
	}
	fmt.Fprintf(out, `Patients (DEVELOPMENT issuer in %s): make a token and paste it at the portal:
  go run ./cmd/schakelpunt patient-token --data-dir %s --bsn %s
  https://%s/portal/

`, patientIssuerDir(a.cfg.DataDir), a.cfg.DataDir, bsn, a.PatientAddr())
}

// PatientAddr is the patient listener's bound address ("" when off).
func (a *app) PatientAddr() string {
	if a.patientLn == nil {
		return ""
	}
	return a.patientLn.Addr().String()
}

// patientTokenCommand prints a token of the development issuer:
// schakelpunt patient-token --data-dir DIR --bsn BSN [--ttl 1h].
func patientTokenCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("patient-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "./data", "the data directory of a serve that uses the development patient issuer")
	bsn := fs.String("bsn", "", "the patient's BSN (eleven-check valid)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid (at most 24h)")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	if *bsn == "" || fs.NArg() > 0 {
		fs.Usage()
		return &exitError{code: 2, err: errors.New("patient-token needs --bsn and no arguments")}
	}
	if !fhir.ValidBSN(*bsn) {
		return &exitError{code: 2, err: errors.New("the BSN fails the eleven-check")}
	}
	dev, _, err := patienttoken.OpenDevIssuer(patientIssuerDir(*dataDir), false)
	if err != nil {
		return err
	}
	tok, err := dev.Issue(*bsn, *ttl)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// portalConfig names, for the portal, organisations that are no source
// (the sources' names come from the registry in the store): with the
// development PKI, the demo supervisor.
func (a *app) portalConfig() routing.PortalConfig {
	pc := routing.PortalConfig{Organisations: map[string]routing.PortalOrganisation{}}
	if a.pkiDir != "" {
		pc.Organisations[uraSupervisor] = routing.PortalOrganisation{Name: "Autoriteit Persoonsgegevens (demo)"}
	}
	return pc
}
