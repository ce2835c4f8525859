package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/schakelpunt/schakelpunt/"

// layers are the top-level folders of DESIGN.md section 5, top to bottom:
// a package may import only from folders below its own (and from its own
// folder's packages).
var layers = []string{"cmd", "routing", "federation", "access", "audit", "profiles", "conformance", "store", "fhir"}

// owners: the only folders that may import a third-party dependency
// (one package per dependency).
var owners = map[string]string{
	"github.com/gin-gonic/gin":              "routing",
	"github.com/santhosh-tekuri/jsonschema": "profiles",
	"go.mongodb.org/mongo-driver":           "store/mongo",
	"github.com/FerretDB/FerretDB":          "store/mongo/mongotest",
	"modernc.org/sqlite":                    "store/sqlite",
	"github.com/google/fhir/go":             "fhir",
	"google.golang.org/protobuf":            "fhir",
	"golang.org/x/time":                     "routing",
	"gopkg.in/yaml.v3":                      "cmd/schakelpunt",
	"github.com/golang-jwt/jwt":             "access/patienttoken",
	"github.com/chromedp":                   "cmd/schakelpunt",
}

func rank(folder string) int {
	top, _, _ := strings.Cut(folder, "/")
	for i, l := range layers {
		if l == top {
			return i
		}
	}
	return -1
}

// TestImportsPointDown keeps the import graph pointing one way, down the
// table of DESIGN.md section 5, and each dependency in its one package.
func TestImportsPointDown(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == "testdata" || name == "node_modules" || (strings.HasPrefix(name, ".") && path != root) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		from := rank(rel)
		if from < 0 {
			t.Errorf("%s: folder %q is not in the layout of DESIGN.md section 5", path, rel)
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if dep, ok := strings.CutPrefix(p, module); ok {
				sameFolder := strings.SplitN(dep, "/", 2)[0] == strings.SplitN(rel, "/", 2)[0]
				if !sameFolder && rank(dep) <= from {
					t.Errorf("%s (%s) imports %s: imports must point down the layout table", path, rel, dep)
				}
				continue
			}
			for prefix, owner := range owners {
				if strings.HasPrefix(p, prefix) && rel != owner {
					t.Errorf("%s imports %s: only %s may", path, p, owner)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Fatalf("only %d files checked: the walk is broken", checked)
	}
}
