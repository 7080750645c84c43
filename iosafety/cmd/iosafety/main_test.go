package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// build builds the command into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	bin := filepath.Join(t.TempDir(), "iosafety")
	out, err := exec.Command(gotool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// run runs name with args in dir and returns its combined output and exit
// code.
func run(t *testing.T, dir, name string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	}
	t.Fatalf("%s %v: %v", name, args, err)
	return "", -1
}

var categories = []string{
	"fd-call:", "fd-escape:", "fd-field:", "newfile:", "borrowed-close:", "shared-state:", "cloexec:",
}

// TestReportsEveryCheck runs the command standalone and as a vet tool over
// a sample module with one hazard of each check.
func TestReportsEveryCheck(t *testing.T) {
	bin := build(t)
	dir := filepath.Join("testdata", "hazard")
	for _, mode := range []struct {
		name string
		args []string
		code int
	}{
		{"standalone", []string{bin, "./..."}, 3},
		{"vettool", []string{"go", "vet", "-vettool=" + bin, "./..."}, 1},
	} {
		t.Run(mode.name, func(t *testing.T) {
			out, code := run(t, dir, mode.args[0], mode.args[1:]...)
			if code != mode.code {
				t.Errorf("exit code %d, want %d\n%s", code, mode.code, out)
			}
			for _, c := range categories {
				if n := strings.Count(out, ": "+c); n != 1 {
					t.Errorf("%d findings of %s, want 1\n%s", n, c, out)
				}
			}
		})
	}
}

// TestSealbufIsClean checks the library's own descriptor code with the
// checker: memfd as a vet tool (tests included), sigbus standalone
// without its tests (a child-process test adopts inherited descriptor 3).
// The library is the parent module, three directories up; outside the
// sealbuf repository (this module alone, as in the module cache) there is
// nothing to check.
func TestSealbufIsClean(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if mod, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil ||
		!strings.HasPrefix(string(mod), "module github.com/sealbuf/sealbuf\n") {
		t.Skip("not inside the sealbuf repository:", root)
	}
	bin := build(t)
	if out, code := run(t, root, "go", "vet", "-vettool="+bin, "./memfd/..."); code != 0 || out != "" {
		t.Errorf("go vet -vettool over ./memfd/...: exit code %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(root, "sigbus")); err != nil {
		t.Log("no sigbus package yet:", err)
		return
	}
	if out, code := run(t, root, bin, "-test=false", "./sigbus/..."); code != 0 || out != "" {
		t.Errorf("iosafety -test=false ./sigbus/...: exit code %d\n%s", code, out)
	}
}
