//go:build linux

package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// Child processes are this test binary run again in a role: with RoleEnv
// set, TestMain (through Main or RunRole) runs the role's body instead of
// the tests and exits with its status. A role's descriptors come from the
// parent as exec.Cmd.ExtraFiles: ChildFile(0) is descriptor 3.
//
// Any test file may add roles, with a package-level
//
//	var _ = testutil.Role("name", func(arg string) int { … })
const (
	RoleEnv = "SEALBUF_TEST_CHILD_ROLE"
	ArgEnv  = "SEALBUF_TEST_CHILD_ARG"
)

var (
	rolesMu sync.Mutex
	roles   = map[string]func(arg string) int{}
)

// Role registers the body of a child role; the result is the child's exit
// status. Use it as `var _ = testutil.Role(name, fn)`.
func Role(name string, fn func(arg string) int) bool {
	rolesMu.Lock()
	defer rolesMu.Unlock()
	if roles[name] != nil {
		panic("testutil: child role registered twice: " + name)
	}
	roles[name] = fn
	return true
}

// RunRole runs the role RoleEnv names, and exits with its status; without
// RoleEnv it returns. Call it first thing in TestMain.
func RunRole() {
	name, ok := os.LookupEnv(RoleEnv)
	if !ok {
		return
	}
	rolesMu.Lock()
	fn := roles[name]
	rolesMu.Unlock()
	if fn == nil {
		fmt.Fprintf(os.Stderr, "unknown child role %q\n", name)
		os.Exit(2)
	}
	os.Exit(fn(os.Getenv(ArgEnv)))
}

// Main is a TestMain: RunRole, then the tests, checked for leaked
// goroutines.
func Main(m *testing.M) {
	RunRole()
	goleak.VerifyTestMain(m)
}

// ChildFile adopts descriptor 3+i, ExtraFiles[i] from the parent, in a
// child. Call it once per descriptor.
func ChildFile(i int, name string) *os.File {
	//iosafety:allow newfile descriptors from 3 on are the parent test's ExtraFiles, adopted once per child
	return os.NewFile(uintptr(3+i), name)
}

// ChildFail ends a role that failed: it prints err to stderr and returns
// the exit status 1.
func ChildFail(err error) int {
	fmt.Fprintln(os.Stderr, "child:", err)
	return 1
}

// Command returns a command that runs this test binary in role with arg,
// running no tests. A -race binary's second of sleep at exit is turned
// off. The caller may add to Env or set Stdout or Stderr before starting
// it (Start, or exec.Cmd's own Run or Output).
func Command(role, arg string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), RoleEnv+"="+role, ArgEnv+"="+arg,
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return cmd
}

// Child is a running child process.
type Child struct {
	Cmd     *exec.Cmd
	errFile *os.File // stderr (or nil when the caller set one): a file, so no pipe or copying goroutine comes and goes in the parent
	outFile *os.File // stdout, likewise
	waited  bool
	err     error
}

// StartChild starts the test binary in role with arg, with files as its
// descriptors 3, 4, …: see Start.
func StartChild(t testing.TB, role, arg string, files ...*os.File) *Child {
	t.Helper()
	return Start(t, Command(role, arg), files...)
}

// Start starts cmd with files as its ExtraFiles, and closes the parent's
// copies of files once the child has them (also when it fails to start).
// Its stdout and stderr, unless the caller set them, go to files that
// Stdout and Stderr read. The child is killed and reaped when the test
// ends, if it still runs.
func Start(t testing.TB, cmd *exec.Cmd, files ...*os.File) *Child {
	t.Helper()
	c := &Child{Cmd: cmd}
	if cmd.Stdout == nil {
		c.outFile = tempFile(t, "stdout")
		cmd.Stdout = c.outFile
	}
	if cmd.Stderr == nil {
		c.errFile = tempFile(t, "stderr")
		cmd.Stderr = c.errFile
	}
	cmd.ExtraFiles = files
	err := cmd.Start()
	for _, f := range files {
		require.NoError(t, f.Close())
	}
	if err != nil {
		c.closeFiles()
	}
	require.NoError(t, err)
	t.Cleanup(func() {
		if !c.waited {
			_ = c.Cmd.Process.Kill()
			_ = c.Wait()
		}
	})
	return c
}

func tempFile(t testing.TB, name string) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), name)
	require.NoError(t, err)
	return f
}

func (c *Child) closeFiles() {
	if c.outFile != nil {
		_ = c.outFile.Close()
	}
	if c.errFile != nil {
		_ = c.errFile.Close()
	}
}

// Wait waits for the child (once; later calls return the same) and
// returns its failure with its stderr.
func (c *Child) Wait() error {
	if c.waited {
		return c.err
	}
	err := c.Cmd.Wait()
	c.waited = true
	c.closeFiles()
	if err != nil {
		c.err = fmt.Errorf("child: %w: %s", err, c.Stderr())
	}
	return c.err
}

// Kill kills the child and waits for it; it fails the test unless the
// child ended by the kill (or had failed already).
func (c *Child) Kill(t testing.TB) {
	t.Helper()
	require.NoError(t, c.Cmd.Process.Kill())
	require.Error(t, c.Wait(), "killed")
}

// Stdout returns what the child wrote to its stdout so far ("" when the
// caller took its stdout).
func (c *Child) Stdout() string { return readFile(c.outFile) }

// Stderr returns what the child wrote to its stderr so far ("" when the
// caller took its stderr).
func (c *Child) Stderr() string { return readFile(c.errFile) }

func readFile(f *os.File) string {
	if f == nil {
		return ""
	}
	b, _ := os.ReadFile(f.Name())
	return string(b)
}
