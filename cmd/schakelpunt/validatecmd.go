package main

import (
	"context"
	"errors"
	"flag"
	"io"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/profiles"
)

// validateCommand: schakelpunt validate [--profile URL] FILE...; exit 1
// when any file has errors.
func validateCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	profile := fs.String("profile", "", "profile canonical URL to validate against (default: the resource's meta.profile)")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	if fs.NArg() == 0 {
		return &exitError{code: 2, err: errors.New("validate: name one or more FHIR JSON files")}
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		return err
	}
	v, err := profiles.New(codec)
	if err != nil {
		return err
	}
	ok, err := profiles.ValidateFiles(ctx, v, stdout, *profile, fs.Args()...)
	if err != nil {
		return err
	}
	if !ok {
		return &exitError{code: 1, err: errors.New("validation failed")}
	}
	return nil
}
