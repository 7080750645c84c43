//go:build linux

package sealbuf_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPythonReadmeExample checks that python/README.md's example runs as
// written: its Go and Python blocks are excerpts of
// python/examples/producer/main.go and python/examples/consumer.py, and
// those two, run the way the README says, print what it says. The run
// needs numpy (else it skips, saying so) and the go command.
func TestPythonReadmeExample(t *testing.T) {
	dir := pyDir(t)
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	require.NoError(t, err)
	blocks := pyFenced(string(readme))
	for _, f := range []struct{ lang, file string }{
		{"go", filepath.Join(dir, "examples", "producer", "main.go")},
		{"python", filepath.Join(dir, "examples", "consumer.py")},
	} {
		src, err := os.ReadFile(f.file)
		require.NoError(t, err)
		require.NotEmpty(t, blocks[f.lang], "README has no %s block", f.lang)
		for _, b := range blocks[f.lang] {
			require.True(t, pyContainsLines(string(src), b), "README's %s block is not an excerpt of %s:\n%s", f.lang, f.file, b)
		}
	}
	var want []string // the README's shell block: commands, then "# output" lines
	for _, b := range blocks["sh"] {
		for _, line := range strings.Split(b, "\n") {
			if out, ok := strings.CutPrefix(line, "# "); ok {
				want = append(want, out)
			}
		}
	}
	require.NotEmpty(t, want, "README shows no output")

	py, err := pyInterpreter()
	if err != nil {
		t.Skip(strings.TrimPrefix(err.Error(), "skip: "))
	}
	if out, err := exec.Command(py, "-c", "import numpy").CombinedOutput(); err != nil {
		t.Skipf("%s cannot import numpy, which the example uses (set SEALBUF_PYTHON to a Python with numpy): %v: %s", py, err, out)
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH:", err)
	}
	tmp := t.TempDir()
	producer := filepath.Join(tmp, "producer")
	out, err := exec.Command(goCmd, "build", "-o", producer, "./python/examples/producer").CombinedOutput()
	require.NoError(t, err, "%s", out)

	sock := filepath.Join(tmp, "sealbuf-demo.sock")
	var prodOut, consOut strings.Builder
	prod := exec.Command(producer, sock)
	prod.Stdout, prod.Stderr = &prodOut, &prodOut
	require.NoError(t, prod.Start())
	t.Cleanup(func() { _ = prod.Process.Kill(); _ = prod.Wait() })
	cons := exec.Command(py, filepath.Join(dir, "examples", "consumer.py"), sock)
	cons.Env = append(os.Environ(), "PYTHONPATH="+dir, "PYTHONDONTWRITEBYTECODE=1")
	cons.Stdout, cons.Stderr = &consOut, &consOut
	require.NoError(t, cons.Run(), consOut.String())
	require.NoError(t, prod.Wait(), prodOut.String())
	got := strings.Split(strings.TrimSpace(strings.ReplaceAll(prodOut.String()+consOut.String(), sock, "/tmp/sealbuf-demo.sock")), "\n")
	require.ElementsMatch(t, want, got)
}

// pyFenced returns the fenced code blocks of a Markdown text by language.
func pyFenced(md string) map[string][]string {
	blocks := map[string][]string{}
	var lang string
	var cur []string
	in := false
	for _, line := range strings.Split(md, "\n") {
		switch {
		case !in && strings.HasPrefix(line, "```") && len(line) > 3:
			in, lang, cur = true, strings.TrimPrefix(line, "```"), nil
		case in && line == "```":
			in = false
			blocks[lang] = append(blocks[lang], strings.Join(cur, "\n"))
		case in:
			cur = append(cur, line)
		}
	}
	return blocks
}

// pyContainsLines reports whether the lines of excerpt occur in src as
// consecutive lines, leading white space aside (an excerpt from inside a
// function loses its indentation).
func pyContainsLines(src, excerpt string) bool {
	trim := func(s string) []string {
		lines := strings.Split(strings.TrimSpace(s), "\n")
		for i, l := range lines {
			lines[i] = strings.TrimSpace(l)
		}
		return lines
	}
	s, e := trim(src), trim(excerpt)
	for i := 0; i+len(e) <= len(s); i++ {
		match := true
		for j := range e {
			if s[i+j] != e[j] {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}
