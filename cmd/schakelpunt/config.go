package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// Config is the configuration of serve: YAML file, then SCHAKELPUNT_*
// environment variables, then flags (flags win).
type Config struct {
	Listen          string           `yaml:"listen"`
	AdminListen     string           `yaml:"admin_listen"`
	PatientListen   string           `yaml:"patient_listen"`
	DataDir         string           `yaml:"data_dir"`
	Store           string           `yaml:"store"`
	MongoDBURI      string           `yaml:"mongodb_uri"`
	MongoDBDatabase string           `yaml:"mongodb_database"`
	Demo            bool             `yaml:"demo"`
	MaxBodyBytes    int64            `yaml:"max_body_bytes"`
	PublicBaseURL   string           `yaml:"public_base_url"`
	LogLevel        string           `yaml:"log_level"`
	ShutdownTimeout time.Duration    `yaml:"shutdown_timeout"`
	TLS             TLSConfig        `yaml:"tls"`
	Policy          PolicyConfig     `yaml:"policy"`
	Audit           AuditConfig      `yaml:"audit"`
	Federation      FederationConfig `yaml:"federation"`
	Patient         PatientConfig    `yaml:"patient"`
	// Sources are the source systems (YAML only: a list).
	Sources []SourceConfig `yaml:"sources"`
	// Supervisors may read the whole access log (YAML only: a list).
	Supervisors []SupervisorConfig `yaml:"supervisors"`
	// Detection is the abuse detection section (YAML only; detect.go).
	Detection DetectionConfig `yaml:"detection"`

	// args and getenv are what the configuration was loaded from: reread
	// loads it again from them (a SIGHUP reload).
	args   []string
	getenv func(string) string
}

// reread loads the configuration again from the same file, environment
// and flags.
func (c *Config) reread() (*Config, error) {
	if c.getenv == nil {
		return nil, errors.New("config: not loaded from a file, the environment and flags")
	}
	return loadConfig(c.args, c.getenv)
}

// maxParallelLimit bounds federation.max_parallel: each request in
// flight may hold an answer of up to 8 MiB.
const maxParallelLimit = 4096

// FederationConfig is our identity towards the sources and whom we trust
// as a source.
type FederationConfig struct {
	ClientCert       string        `yaml:"client_cert"`
	ClientKey        string        `yaml:"client_key"`
	SourceCA         []string      `yaml:"source_ca"`
	PerSourceTimeout time.Duration `yaml:"per_source_timeout"`
	Deadline         time.Duration `yaml:"deadline"`
	MaxParallel      int64         `yaml:"max_parallel"`
}

// PatientConfig names the issuer of patient tokens (OIDC/JWT) that the
// patient listener trusts. Without an issuer, serve creates and trusts a
// development issuer under DATA/patient-issuer.
type PatientConfig struct {
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	JWKS     string `yaml:"jwks"`
	// Rate and Burst bound each client address's requests on the
	// patient listener (see routing.Throttle).
	Rate  int64 `yaml:"rate"`
	Burst int64 `yaml:"burst"`
}

// SourceConfig is one source system (DESIGN.md section 8).
type SourceConfig struct {
	URA        string   `yaml:"ura"`
	Name       string   `yaml:"name"`
	BaseURL    string   `yaml:"base_url"`
	Categories []string `yaml:"categories"`
}

// AuditConfig is the access log's retention.
type AuditConfig struct {
	Retention         time.Duration `yaml:"retention"`
	RetentionInterval time.Duration `yaml:"retention_interval"`
}

// PolicyConfig widens the role policy (DESIGN.md section 3).
type PolicyConfig struct {
	GPSummaryRoles  []string `yaml:"gp_summary_roles"`
	MedicationRoles []string `yaml:"medication_roles"`
}

// SupervisorConfig names a supervisor certificate by URA or UZI number.
type SupervisorConfig struct {
	URA string `yaml:"ura"`
	UZI string `yaml:"uzi"`
}

// TLSConfig is the public listener's TLS.
type TLSConfig struct {
	Cert     string   `yaml:"cert"`
	Key      string   `yaml:"key"`
	ClientCA []string `yaml:"client_ca"`
	CRL      []string `yaml:"crl"`
}

// setting is one configuration value: its YAML key, default and help are
// defined once here; the flag (key with dots and underscores as dashes)
// and the environment variable (SCHAKELPUNT_ + key in capitals) are
// derived from it, and so is the README's reference table (a test keeps
// them in step).
type setting struct {
	key  string
	def  string
	help string
	ptr  func(*Config) any
}

var settings = []setting{
	{"listen", "127.0.0.1:8443", "public listener (mutual TLS): professionals and source systems", func(c *Config) any { return &c.Listen }},
	{"admin_listen", "127.0.0.1:8081", "admin listener (plain HTTP, keep it on loopback): /health, /ready, /metrics", func(c *Config) any { return &c.AdminListen }},
	{"patient_listen", "127.0.0.1:8444", "patient listener (TLS, bearer tokens, no client certificate): /portal and the patient's FHIR API; empty: off", func(c *Config) any { return &c.PatientListen }},
	{"data_dir", "./data", "data directory: the embedded database and the development PKI", func(c *Config) any { return &c.DataDir }},
	{"store", "embedded", "store: embedded (SQLite in the data directory) or mongodb", func(c *Config) any { return &c.Store }},
	{"mongodb_uri", "", "MongoDB connection string (with store mongodb)", func(c *Config) any { return &c.MongoDBURI }},
	{"mongodb_database", "schakelpunt", "MongoDB database name", func(c *Config) any { return &c.MongoDBDatabase }},
	{"max_body_bytes", "1048576", "largest request body accepted (413 beyond)", func(c *Config) any { return &c.MaxBodyBytes }},
	{"public_base_url", "", "absolute base URL for fullUrl and Location (default: https://<Host>/fhir/R4)", func(c *Config) any { return &c.PublicBaseURL }},
	{"log_level", "info", "log level: debug, info, warn or error", func(c *Config) any { return &c.LogLevel }},
	{"demo", "false", "start a demo GP system and two pharmacies in this process, with sample patients and consents (needs the development PKI)", func(c *Config) any { return &c.Demo }},
	{"shutdown_timeout", "30s", "how long requests in flight may take to finish on shutdown", func(c *Config) any { return &c.ShutdownTimeout }},
	{"tls.cert", "", "server certificate (PEM); empty: a development CA and certificate under DATA/pki", func(c *Config) any { return &c.TLS.Cert }},
	{"tls.key", "", "server private key (PEM)", func(c *Config) any { return &c.TLS.Key }},
	{"tls.client_ca", "", "CA certificates whose client certificates may connect (comma-separated files)", func(c *Config) any { return &c.TLS.ClientCA }},
	{"tls.crl", "", "certificate revocation lists (comma-separated files, reloaded when they change)", func(c *Config) any { return &c.TLS.CRL }},
	{"audit.retention", "43800h", "how long AuditEvents are kept (0 keeps them forever); older ones are removed, the chain stays verifiable", func(c *Config) any { return &c.Audit.Retention }},
	{"audit.retention_interval", "1h", "how often the retention job runs", func(c *Config) any { return &c.Audit.RetentionInterval }},
	{"federation.client_cert", "", "our client certificate towards the sources (PEM); empty: issued by the development CA", func(c *Config) any { return &c.Federation.ClientCert }},
	{"federation.client_key", "", "its private key (PEM)", func(c *Config) any { return &c.Federation.ClientKey }},
	{"federation.source_ca", "", "CA certificates a source's server certificate must chain to (comma-separated files)", func(c *Config) any { return &c.Federation.SourceCA }},
	{"federation.per_source_timeout", "3s", "how long one source may take to answer", func(c *Config) any { return &c.Federation.PerSourceTimeout }},
	{"federation.deadline", "5s", "how long a federated query may take in all", func(c *Config) any { return &c.Federation.Deadline }},
	{"federation.max_parallel", "128", "source requests in flight at once, for all queries (each answer may hold up to 8 MiB)", func(c *Config) any { return &c.Federation.MaxParallel }},
	{"patient.issuer", "", "issuer (iss) of patient tokens; empty: a development issuer under DATA/patient-issuer (see patient-token)", func(c *Config) any { return &c.Patient.Issuer }},
	{"patient.audience", "", "audience (aud) patient tokens must carry (required with patient.issuer)", func(c *Config) any { return &c.Patient.Audience }},
	{"patient.jwks", "", "the issuer's keys: a JWKS file or https URL, fetched with a timeout and refreshed (required with patient.issuer)", func(c *Config) any { return &c.Patient.JWKS }},
	{"patient.rate", "20", "requests a second each client address may make on the patient listener, on average (429 beyond); 0: no limit", func(c *Config) any { return &c.Patient.Rate }},
	{"patient.burst", "60", "requests a client address may make at once on the patient listener", func(c *Config) any { return &c.Patient.Burst }},
	{"policy.gp_summary_roles", "", "role codes (x for any digit) admitted to the GP summary beyond 01.015 and 01.004, e.g. 01.047", func(c *Config) any { return &c.Policy.GPSummaryRoles }},
	{"policy.medication_roles", "", "role codes admitted to medication beyond the defaults", func(c *Config) any { return &c.Policy.MedicationRoles }},
}

func (s setting) flagName() string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(s.key)
}

func (s setting) envName() string {
	return "SCHAKELPUNT_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(s.key))
}

// set parses v into the setting's field.
func (s setting) set(c *Config, v string) error {
	switch p := s.ptr(c).(type) {
	case *string:
		*p = v
	case *bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", s.key, v)
		}
		*p = b
	case *int64:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a whole number", s.key, v)
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration such as 30s", s.key, v)
		}
		*p = d
	case *[]string:
		*p = nil
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				*p = append(*p, part)
			}
		}
	default:
		return fmt.Errorf("%s: unsupported setting type %T", s.key, p)
	}
	return nil
}

// loadConfig builds the configuration from defaults, the YAML file (from
// --config or SCHAKELPUNT_CONFIG), the environment and the flags.
func loadConfig(args []string, getenv func(string) string) (*Config, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	configFile := fs.String("config", getenv("SCHAKELPUNT_CONFIG"), "YAML configuration file (env SCHAKELPUNT_CONFIG)")
	flagged := map[string]*string{}
	for _, s := range settings {
		v := new(string)
		usage, set := s.help+" (env "+s.envName()+", default "+strconv.Quote(s.def)+")", func(x string) error { *v = x; return nil }
		if _, isBool := s.ptr(&Config{}).(*bool); isBool {
			fs.BoolFunc(s.flagName(), usage, set) // --demo alone means true
		} else {
			fs.Func(s.flagName(), usage, set)
		}
		flagged[s.key] = v
	}
	var setFlags []string
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) { setFlags = append(setFlags, f.Name) })

	c := &Config{Detection: defaultDetection(), args: args, getenv: getenv}
	for _, s := range settings {
		if err := s.set(c, s.def); err != nil {
			return nil, err
		}
	}
	if *configFile != "" {
		f, err := os.Open(*configFile)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(f)
		dec.KnownFields(true)
		err = dec.Decode(c)
		f.Close()
		if err != nil && !errors.Is(err, io.EOF) { // an empty file sets nothing
			return nil, fmt.Errorf("config %s: %w", *configFile, err)
		}
	}
	for _, s := range settings {
		if v := getenv(s.envName()); v != "" {
			if err := s.set(c, v); err != nil {
				return nil, fmt.Errorf("environment %s: %w", s.envName(), err)
			}
		}
	}
	for _, name := range setFlags {
		for _, s := range settings {
			if s.flagName() == name {
				if err := s.set(c, *flagged[s.key]); err != nil {
					return nil, fmt.Errorf("flag --%s: %w", name, err)
				}
			}
		}
	}
	return c, c.check()
}

// check validates values that parse but make no sense.
func (c *Config) check() error {
	switch c.Store {
	case "embedded":
	case "mongodb":
		if c.MongoDBURI == "" {
			return errors.New("config: store mongodb needs mongodb_uri (--mongodb-uri, SCHAKELPUNT_MONGODB_URI)")
		}
	default:
		return fmt.Errorf("config: store %q is not embedded or mongodb", c.Store)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return errors.New("config: tls.cert and tls.key go together")
	}
	if c.TLS.Cert != "" && len(c.TLS.ClientCA) == 0 {
		return errors.New("config: with tls.cert configured, tls.client_ca must name the CAs whose clients may connect")
	}
	if c.MaxBodyBytes < 1024 {
		return fmt.Errorf("config: max_body_bytes %d is too small (at least 1024)", c.MaxBodyBytes)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log_level %q is not debug, info, warn or error", c.LogLevel)
	}
	if c.Audit.Retention < 0 || c.Audit.RetentionInterval <= 0 {
		return errors.New("config: audit.retention must be 0 or more and audit.retention_interval more than 0")
	}
	if (c.Federation.ClientCert == "") != (c.Federation.ClientKey == "") {
		return errors.New("config: federation.client_cert and federation.client_key go together")
	}
	if c.Federation.PerSourceTimeout <= 0 || c.Federation.Deadline <= 0 {
		return errors.New("config: federation.per_source_timeout and federation.deadline must be more than 0")
	}
	if c.Federation.MaxParallel <= 0 || c.Federation.MaxParallel > maxParallelLimit {
		return fmt.Errorf("config: federation.max_parallel must be from 1 to %d", maxParallelLimit)
	}
	if err := c.checkSources(); err != nil {
		return err
	}
	if c.Demo && (c.TLS.Cert != "" || c.Federation.ClientCert != "") {
		return errors.New("config: demo runs its sources on the development PKI under DATA/pki: " +
			"leave tls.cert and federation.client_cert unset with --demo, or run without --demo")
	}
	if p := c.Patient; p.Issuer != "" && (p.Audience == "" || p.JWKS == "") {
		return errors.New("config: patient.issuer needs patient.audience and patient.jwks")
	} else if p.Issuer == "" && (p.Audience != "" || p.JWKS != "") {
		return errors.New("config: patient.audience and patient.jwks need patient.issuer")
	}
	if c.Patient.Rate < 0 || c.Patient.Burst < 1 {
		return errors.New("config: patient.rate must be 0 or more and patient.burst 1 or more")
	}
	if c.DataDir == "" {
		return errors.New("config: data_dir is empty")
	}
	return nil
}

// checkSources validates the source registry (sources:), on its own: a
// SIGHUP reload that fails it keeps the registry as it was.
func (c *Config) checkSources() error {
	seen := map[string]int{}
	for i, src := range c.Sources {
		u, err := url.Parse(src.BaseURL)
		if !fhir.ValidURA(src.URA) || err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("config: sources[%d] needs an 8-digit ura and an https base_url", i)
		}
		if j, dup := seen[src.URA]; dup {
			return fmt.Errorf("config: sources[%d] and sources[%d] both have ura %s: one source per organisation", j, i, src.URA)
		}
		seen[src.URA] = i
		if len(src.Categories) == 0 {
			return fmt.Errorf("config: sources[%d] (ura %s) needs categories: medication, gp-summary or both", i, src.URA)
		}
		for _, cat := range src.Categories {
			if cat != "medication" && cat != "gp-summary" {
				return fmt.Errorf("config: sources[%d]: category %q is not medication or gp-summary", i, cat)
			}
		}
		if c.Demo && isDemoURA(src.URA) {
			return fmt.Errorf("config: sources[%d]: ura %s is a demo source's; with --demo, configure other organisations", i, src.URA)
		}
	}
	if _, err := c.Detection.rules(); err != nil {
		return err
	}
	return nil
}

// configTable renders the settings as the README's reference rows.
func configTable() string {
	var b strings.Builder
	for _, s := range settings {
		def := s.def
		if def == "" {
			def = "(none)"
		}
		fmt.Fprintf(&b, "| `%s` | `--%s` | `%s` | `%s` | %s |\n", s.key, s.flagName(), s.envName(), def, s.help)
	}
	return b.String()
}
