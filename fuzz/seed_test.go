package fuzz

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// seed adds a seed input to f. With SEALBUF_WRITE_SEEDS=1 in the
// environment it also writes it to testdata/fuzz/<target>/<name> in go's
// corpus format, which is how the checked-in corpora were made:
//
//	SEALBUF_WRITE_SEEDS=1 go test -run '^Fuzz' ./fuzz
func seed(f *testing.F, name string, args ...any) {
	f.Helper()
	f.Add(args...)
	if os.Getenv("SEALBUF_WRITE_SEEDS") != "1" {
		return
	}
	b := []byte("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			b = fmt.Appendf(b, "[]byte(%q)\n", v)
		case string:
			b = fmt.Appendf(b, "string(%q)\n", v)
		case bool:
			b = fmt.Appendf(b, "bool(%v)\n", v)
		case byte:
			b = fmt.Appendf(b, "byte(%d)\n", v)
		case uint32:
			b = fmt.Appendf(b, "uint32(%d)\n", v)
		default:
			f.Fatalf("seed %s: cannot encode %T", name, a)
		}
	}
	dir := filepath.Join("testdata", "fuzz", f.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		f.Fatal(err)
	}
}
