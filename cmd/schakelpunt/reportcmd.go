package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schakelpunt/schakelpunt/audit/report"
)

const reportUsage = "usage: schakelpunt audit report --month YYYY-MM [--format csv|html] [--out FILE] [--time-zone ZONE] [--config FILE] [--data-dir DIR] [--store embedded|mongodb] [--mongodb-uri URI]"

// reportFlags are the report's own flags; the rest are serve's store
// flags, for loadConfig.
type reportFlags struct {
	month, format, out, zone string
}

// splitReportFlags takes --month, --format, --out and --time-zone (as
// --name value or --name=value, one or two dashes) out of args.
func splitReportFlags(args []string) (reportFlags, []string, error) {
	f := reportFlags{format: "csv"}
	fields := map[string]*string{"month": &f.month, "format": &f.format, "out": &f.out, "time-zone": &f.zone}
	var rest []string
	for i := 0; i < len(args); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		p, ok := fields[name]
		if !ok || !strings.HasPrefix(args[i], "-") {
			rest = append(rest, args[i])
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				return f, nil, fmt.Errorf("flag --%s needs a value", name)
			}
			i++
			value = args[i]
		}
		*p = value
	}
	return f, rest, nil
}

// reportCommand: schakelpunt audit report. It reads the store offline,
// like audit verify, and writes the month's report to --out or stdout.
// Exit code 2 for bad usage or a store that cannot be read.
func reportCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	usageErr := func(err error) error {
		fmt.Fprintln(stderr, reportUsage)
		return &exitError{code: 2, err: err}
	}
	f, rest, err := splitReportFlags(args)
	if err != nil {
		return usageErr(err)
	}
	month, err := time.Parse("2006-01", f.month)
	if err != nil {
		return usageErr(fmt.Errorf("--month %q is not YYYY-MM", f.month))
	}
	if f.format != "csv" && f.format != "html" {
		return usageErr(fmt.Errorf("--format %q is not csv or html", f.format))
	}
	cfg, err := loadConfig(rest, getenv)
	if err != nil {
		return usageErr(err)
	}
	if f.zone == "" {
		f.zone = cfg.Detection.TimeZone
	}
	loc, err := time.LoadLocation(f.zone)
	if err != nil {
		return usageErr(fmt.Errorf("--time-zone: %w", err))
	}
	if cfg.Store != "mongodb" {
		// Opening the embedded store creates it: a report on a data
		// directory without one would be an empty month.
		path := filepath.Join(cfg.DataDir, "schakelpunt.db")
		if _, err := os.Stat(path); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("no embedded store at %s: %w", path, err)}
		}
	}
	st, err := openStore(ctx, cfg, newLogger(stderr, cfg.LogLevel), false)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer st.Close()
	names := map[string]string{}
	for _, s := range cfg.Sources {
		names[s.URA] = s.Name
	}
	rep, err := report.Build(ctx, st, report.Options{Year: month.Year(), Month: month.Month(), Location: loc, Names: names})
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	render := rep.CSV
	if f.format == "html" {
		render = rep.HTML
	}
	if f.out == "" {
		w := bufio.NewWriter(stdout)
		if err := render(w); err != nil {
			return err
		}
		return w.Flush()
	}
	// Written beside the target and renamed: a report is whole or absent.
	tmp, err := os.CreateTemp(filepath.Dir(f.out), ".report-*")
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriter(tmp)
	err = render(w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = tmp.Close()
	} else {
		tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), f.out)
	}
	if err != nil {
		return &exitError{code: 2, err: errors.Join(errors.New("report not written"), err)}
	}
	return nil
}
