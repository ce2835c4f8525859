package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/access/mtls"
	"github.com/schakelpunt/schakelpunt/access/pki"
	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/audit/detect"
	"github.com/schakelpunt/schakelpunt/conformance"
	"github.com/schakelpunt/schakelpunt/federation"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/profiles"
	"github.com/schakelpunt/schakelpunt/routing"
	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/mongo"
	"github.com/schakelpunt/schakelpunt/store/sqlite"
)

func serve(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	cfg, err := loadConfig(args, getenv)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	log := newLogger(stderr, cfg.LogLevel)
	// SIGHUP reloads the source registry; registered before start, so a
	// SIGHUP never ends the process once it says it is serving.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	a, err := start(ctx, cfg, log, stderr)
	if err != nil {
		return err
	}
	for {
		select {
		case <-hup:
			log.Info("SIGHUP: reloading the source registry from the configuration")
			_ = a.reload(ctx) // a failed reload is logged and changes nothing
		case <-ctx.Done():
			log.Info("shutting down: finishing requests in flight")
			return a.shutdown()
		}
	}
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // checked by Config.check
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// app is a running switching point.
type app struct {
	log      *slog.Logger
	cfg      *Config
	store    store.Store
	public   *http.Server
	admin    *http.Server
	publicLn net.Listener
	adminLn  net.Listener
	served   chan error
	pkiDir   string // the development PKI, when one is in use
	recorder *audit.Recorder
	detector *detect.Runner
	stopJobs context.CancelFunc
	jobs     sync.WaitGroup // background jobs (retention), waited for on shutdown
	engine   *federation.Engine
	patientListener

	validator *profiles.Validator
	started   Config     // the configuration as loaded, to tell what a reload cannot change
	reloading sync.Mutex // one reload at a time
	demo      *demo      // the demo sources (serve --demo)
}

// PublicAddr and AdminAddr are the bound addresses (useful with port 0).
func (a *app) PublicAddr() string { return a.publicLn.Addr().String() }
func (a *app) AdminAddr() string  { return a.adminLn.Addr().String() }

// start opens the store, builds the handlers and starts the listeners.
// Human-readable notes (where the development certificates are, a first
// curl command) go to out.
func start(ctx context.Context, cfg *Config, log *slog.Logger, out io.Writer) (_ *app, err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	a := &app{log: log, cfg: cfg, served: make(chan error, 3), started: *cfg}
	defer func() {
		if err != nil {
			a.closeAll()
		}
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := routing.NewMetrics(reg)

	st, err := openStore(ctx, cfg, log, true)
	if err != nil {
		return nil, err
	}
	a.store = st

	tlsConf, err := a.serverTLS(metrics)
	if err != nil {
		return nil, err
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		return nil, err
	}
	validator, err := profiles.New(codec)
	if err != nil {
		return nil, fmt.Errorf("profiles: %w", err)
	}
	a.validator = validator
	if cfg.Demo {
		if err := a.startDemo(); err != nil {
			return nil, err
		}
	}
	if a.pkiDir != "" && !hasSupervisor(cfg, uraSupervisor) {
		// The development PKI's supervisor certificate reads the whole log.
		cfg.Supervisors = append(cfg.Supervisors, SupervisorConfig{URA: uraSupervisor})
	}
	policy, err := newPolicy(cfg)
	if err != nil {
		return nil, err
	}
	sources := append(sourcesOf(cfg.Sources), a.demoSources()...)
	engine, err := a.federationEngine(metrics, policy, validator, sources)
	if err != nil {
		return nil, err
	}
	a.engine = engine
	if err := a.syncRegistry(ctx, sources); err != nil {
		return nil, err
	}
	auditLog, ok := st.(store.AuditLog)
	if !ok {
		return nil, fmt.Errorf("store %s keeps no audit log", cfg.Store)
	}
	if a.detector, err = startDetection(cfg.Detection, st, reg, log); err != nil {
		return nil, err
	}
	a.recorder = audit.NewRecorder(auditLog, audit.Options{Logger: log, Observer: "Schakelpunt " + cfg.Listen, OnRecorded: onRecorded(a.detector)})
	handler, err := routing.New(routing.Config{
		Store:      metrics.InstrumentStore(st),
		Codec:      codec,
		Logger:     log,
		Metrics:    metrics,
		Policy:     policy,
		Validator:  validator,
		Federator:  engine,
		Audit:      a.recorder,
		AuditLog:   auditLog,
		ExportDir:  filepath.Join(cfg.DataDir, "exports"),
		MaxBody:    cfg.MaxBodyBytes,
		PublicBase: cfg.PublicBaseURL,
		Software:   conformance.Software{Name: "Schakelpunt", Version: version},
	})
	if err != nil {
		return nil, err
	}

	a.publicLn, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("public listener: %w", err)
	}
	a.adminLn, err = net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	a.public = newFHIRServer(handler, tlsConf, errLog)
	a.admin = &http.Server{
		Handler:           routing.Admin(st, reg),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          errLog,
	}
	if err := a.startPatient(ctx, routing.PatientConfig{Store: metrics.InstrumentStore(st), Codec: codec, Logger: log, Metrics: metrics,
		Audit: a.recorder, Validator: validator, MaxBody: cfg.MaxBodyBytes,
		Throttle: routing.Throttle{Rate: float64(cfg.Patient.Rate), Burst: int(cfg.Patient.Burst)}}, tlsConf); err != nil {
		return nil, err
	}
	jobs, stopJobs := context.WithCancel(context.Background())
	a.stopJobs = stopJobs
	retention := audit.Retention{Log: auditLog, Recorder: a.recorder, Keep: cfg.Audit.Retention, Every: cfg.Audit.RetentionInterval, Logger: log}
	a.jobs.Go(func() { retention.Run(jobs) })
	go func() { a.served <- a.public.Serve(tls.NewListener(a.publicLn, tlsConf)) }()
	go func() { a.served <- a.admin.Serve(a.adminLn) }()
	if a.demo != nil {
		if err := a.seedDemo(ctx, a.localBase()); err != nil {
			return nil, err
		}
	}
	if a.pkiDir != "" {
		a.printDevNotes(out)
	}
	a.printPatientNotes(out)
	log.Info("schakelpunt serving",
		slog.String("fhir", "https://"+a.PublicAddr()+routing.BasePath),
		slog.String("admin", "http://"+a.AdminAddr()),
		slog.String("store", cfg.Store))
	return a, nil
}

// openStore opens the configured store; serving is true for serve (see
// sqlite.Options.Serving), false for the tools that open it beside a
// server.
func openStore(ctx context.Context, cfg *Config, log *slog.Logger, serving bool) (store.Store, error) {
	switch cfg.Store {
	case "mongodb":
		s, err := mongo.Open(ctx, cfg.MongoDBURI, cfg.MongoDBDatabase, mongo.Options{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("mongodb store: %w", err)
		}
		return s, nil
	default:
		s, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "schakelpunt.db"), sqlite.Options{Logger: log, Serving: serving})
		if err != nil {
			return nil, fmt.Errorf("embedded store: %w", err)
		}
		return s, nil
	}
}

// shutdown lets requests in flight finish, then flushes and closes the
// store.
func (a *app) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	if err := a.public.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("public listener: %w", err))
	}
	if err := a.admin.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("admin listener: %w", err))
	}
	if a.patient != nil {
		if err := a.patient.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("patient listener: %w", err))
		}
	}
	a.stopJobs()
	a.jobs.Wait() // a retention pass in progress ends before the store closes
	if a.demo != nil {
		a.demo.close()
	}
	a.engine.Close()
	if err := a.recorder.Close(); err != nil {
		errs = append(errs, fmt.Errorf("audit: %w", err))
	}
	a.detector.Close()
	if err := a.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("store: %w", err))
	}
	a.log.Info("stopped")
	return errors.Join(errs...)
}

func (a *app) closeAll() {
	for _, srv := range []*http.Server{a.public, a.admin, a.patient} {
		if srv != nil {
			srv.Close()
		}
	}
	for _, ln := range []net.Listener{a.publicLn, a.adminLn, a.patientLn} {
		if ln != nil {
			ln.Close()
		}
	}
	if a.stopJobs != nil {
		a.stopJobs()
	}
	if a.demo != nil {
		a.demo.close()
	}
	if a.recorder != nil {
		a.recorder.Close()
	}
	a.detector.Close()
	if a.store != nil {
		a.store.Close()
	}
}

// newPolicy builds the role policy from the configuration.
func newPolicy(cfg *Config) (*access.Policy, error) {
	pc := access.PolicyConfig{GPSummaryRoles: cfg.Policy.GPSummaryRoles, MedicationRoles: cfg.Policy.MedicationRoles}
	for _, s := range cfg.Supervisors {
		pc.Supervisors = append(pc.Supervisors, access.Supervisor{URA: s.URA, UZI: s.UZI})
	}
	pol, err := access.NewPolicy(pc)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return pol, nil
}

func hasSupervisor(cfg *Config, ura string) bool {
	for _, s := range cfg.Supervisors {
		if s.URA == ura {
			return true
		}
	}
	return false
}

// printDevNotes tells a newcomer where the development certificates are
// and gives commands that work as printed (with --demo, one per demo
// role and outcome).
func (a *app) printDevNotes(out io.Writer) {
	dir := a.pkiDir
	base := a.localBase()
	curl := func(role, path string) string {
		return fmt.Sprintf("curl -sS --cacert %s --cert %s --key %s -w '\\nHTTP %%{http_code}\\n' %s",
			shellQuote(filepath.Join(dir, "ca.crt")), shellQuote(filepath.Join(dir, "clients", role+".crt")),
			shellQuote(filepath.Join(dir, "clients", role+".key")), shellQuote(base+path))
	}
	fmt.Fprintf(out, `
Schakelpunt is running with a DEVELOPMENT CA (%s): not for production.
Client certificates for the demo roles are in %s:
`, dir, filepath.Join(dir, "clients"))
	for _, c := range demoClients {
		fmt.Fprintf(out, "  %-16s card %s, URA %s, role %s\n", c.file, c.req.CardType, c.req.URA, roleOf(c.req))
	}
	fmt.Fprintln(out)
	if a.demo != nil {
		a.printDemoNotes(out, curl)
		return
	}
	fmt.Fprintf(out, `Try (the capability statement, then the access log as the supervisor):
  %s
  %s

`, curl("huisarts", "/metadata"), curl("toezichthouder", "/AuditEvent?_sort=-date&_count=5"))
}

// shellQuote quotes s for a POSIX shell, when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func roleOf(req pki.IssueRequest) string {
	if req.Role == "" {
		return "00.000"
	}
	return req.Role
}

// federationEngine builds the federation engine from the configured
// sources, our client certificate (from configuration, or issued by the
// development CA) and the CAs we trust as sources.
func (a *app) federationEngine(metrics *routing.Metrics, policy *access.Policy, validator *profiles.Validator, registry []federation.Source) (*federation.Engine, error) {
	cfg := a.cfg
	var (
		cert tls.Certificate
		cas  []*x509.Certificate
		err  error
	)
	switch {
	case cfg.Federation.ClientCert != "":
		if cert, err = tls.LoadX509KeyPair(cfg.Federation.ClientCert, cfg.Federation.ClientKey); err != nil {
			return nil, fmt.Errorf("federation.client_cert/client_key: %w", err)
		}
		if cas, err = mtls.LoadCertificates(cfg.Federation.SourceCA...); err != nil {
			return nil, fmt.Errorf("federation.source_ca: %w", err)
		}
	case a.pkiDir != "":
		ca, err := pki.Load(a.pkiDir)
		if err != nil {
			return nil, err
		}
		if cert, err = devClientCert(ca, filepath.Join(a.pkiDir, "schakelpunt-client")); err != nil {
			return nil, err
		}
		cas = []*x509.Certificate{ca.Cert}
	default:
		if len(registry) > 0 {
			return nil, errors.New("config: sources need federation.client_cert, client_key and source_ca")
		}
	}
	if len(cas) == 0 {
		cas = nil
	}
	return federation.New(federation.Config{
		Registry: registry, Index: a.store, Policy: policy, Validator: validator,
		ClientCert: cert, SourceCAs: cas, Logger: a.log,
		PerSourceTimeout: cfg.Federation.PerSourceTimeout, Deadline: cfg.Federation.Deadline,
		MaxParallel: int(cfg.Federation.MaxParallel),
	})
}

// devClientCert is the switching point's own client certificate towards
// sources under the development CA (a server card of the operator).
func devClientCert(ca *pki.CA, prefix string) (tls.Certificate, error) {
	if cert, err := tls.LoadX509KeyPair(prefix+".crt", prefix+".key"); err == nil {
		if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil && time.Until(leaf.NotAfter) > 24*time.Hour && leaf.CheckSignatureFrom(ca.Cert) == nil {
			return cert, nil
		}
	}
	certPEM, keyPEM, _, err := ca.Issue(pki.IssueRequest{CardType: access.CardServer, UZI: "99999990", URA: "90000000", Name: "Schakelpunt (development)", ClientAuth: true})
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("development federation certificate: %w", err)
	}
	if err := pki.WriteFiles(prefix, certPEM, keyPEM); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// newFHIRServer is an HTTPS server for a FHIR listener (the public and the
// patient listener): bounded header, read, write and idle times.
func newFHIRServer(h http.Handler, tlsConf *tls.Config, errLog *stdlog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog,
	}
}
