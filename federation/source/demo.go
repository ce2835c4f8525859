package source

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
)

//go:embed testdata/demo
var demoFiles embed.FS

// Demo source directories, under testdata/demo in the repository and in
// DemoFS.
const (
	DemoGP        = "huisarts"           // Huisartsenpraktijk De Linde, URA 90000001
	DemoPharmacy1 = "apotheek-de-brug"   // Apotheek De Brug, URA 90000002
	DemoPharmacy2 = "apotheek-het-kruis" // Apotheek Het Kruis, URA 90000003
)

// DemoSource describes one demo source: its fixture directory, the
// organisation it belongs to, and the data categories it provides
// (DESIGN.md section 8: medication, gp-summary).
type DemoSource struct {
	Dir        string
	URA        string
	Name       string
	Categories []string
}

// DemoSources returns the demo sources: a GP system and two pharmacies.
func DemoSources() []DemoSource {
	return []DemoSource{
		{Dir: DemoGP, URA: "90000001", Name: "Huisartsenpraktijk De Linde", Categories: []string{"gp-summary"}},
		{Dir: DemoPharmacy1, URA: "90000002", Name: "Apotheek De Brug", Categories: []string{"medication"}},
		{Dir: DemoPharmacy2, URA: "90000003", Name: "Apotheek Het Kruis", Categories: []string{"medication"}},
	}
}

// DemoFS is the demo fixtures, embedded: one directory per demo source.
func DemoFS() fs.FS {
	sub, err := fs.Sub(demoFiles, "testdata/demo")
	if err != nil {
		panic(err) // cannot happen: the directory is embedded
	}
	return sub
}

// LoadDemo loads the embedded fixtures of one demo source (DemoGP,
// DemoPharmacy1 or DemoPharmacy2).
func LoadDemo(dir string) (*Data, error) {
	d, err := LoadFS(DemoFS(), dir)
	if err != nil {
		return nil, fmt.Errorf("source: demo %s: %w", path.Clean(dir), err)
	}
	return d, nil
}
