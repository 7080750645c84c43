//go:build linux

package sealbuf_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
)

// Some hostile-peer tests run their dangerous part in a child process (a
// role, see internal/testutil): before a fix it could die of SIGBUS, which
// must show as a test failure, not kill the test binary. The child reports
// what each call returned as JSON lines on stdout (an outcome per call), and
// the parent asserts on them. A child that cannot set the scene up (another
// process took the huge pages it needed, say) exits with childSkip and says
// why on stderr; the parent then skips.
const childSkip = 3

// outcome is what one call in a child returned.
type outcome struct {
	Call string
	Err  string          // "" for a nil error
	Is   map[string]bool // errors.Is against the targets in outcomeTargets
	N    int64           // a count or size the call returned
}

var outcomeTargets = map[string]error{
	"ErrTruncated": sealbuf.ErrTruncated,
	"ErrTooLarge":  sealbuf.ErrTooLarge,
	"ENOMEM":       unix.ENOMEM,
	"EPERM":        unix.EPERM,
	"EEXIST":       unix.EEXIST,
	"EOF":          io.EOF,
}

// report writes the outcome of call to stdout.
func report(call string, n int64, err error) {
	o := outcome{Call: call, N: n, Is: map[string]bool{}}
	if err != nil {
		o.Err = err.Error()
		for name, target := range outcomeTargets {
			o.Is[name] = errors.Is(err, target)
		}
	}
	b, _ := json.Marshal(o)
	fmt.Println(string(b))
}

// childSkipf ends a child that could not set the scene up.
func childSkipf(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	return childSkip
}

// runOutcomes runs the test binary in role with arg and returns the
// outcomes it reported, by call. A child that crashed or failed fails the
// test with its output; one that exits with childSkip skips it.
func runOutcomes(t *testing.T, role, arg string) map[string]outcome {
	t.Helper()
	cmd := testutil.Command(role, arg)
	cmd.Env = append(cmd.Env, "GOTRACEBACK=single")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == childSkip {
		t.Skipf("child %s %s: %s", role, arg, stderr.String())
	}
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("child %s %s was killed by %v:\n%s", role, arg, ws.Signal(), head(stderr.String(), 30))
		}
	}
	require.NoError(t, err, "child %s %s (a crash with SIGBUS is the bug under test):\n%s", role, arg, head(stderr.String(), 30))
	got := map[string]outcome{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var o outcome
		if json.Unmarshal(sc.Bytes(), &o) == nil && o.Call != "" {
			got[o.Call] = o
		}
	}
	return got
}

// head returns the first n lines of s: enough of a crash's traceback.
func head(s string, n int) string {
	lines := strings.SplitAfterN(s, "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "...\n")
	}
	return strings.Join(lines, "")
}

// requireOutcome returns the outcome of call, failing if the child did not
// report it.
func requireOutcome(t *testing.T, got map[string]outcome, call string) outcome {
	t.Helper()
	o, ok := got[call]
	require.True(t, ok, "the child did not report %q (it reported %v)", call, got)
	return o
}

// sysctlInt reads an integer from a file under /proc/sys.
func sysctlInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// setSysctl writes an integer to a file under /proc/sys.
func setSysctl(path string, v int) error {
	return os.WriteFile(path, []byte(strconv.Itoa(v)), 0)
}

// meminfo returns the value of a line of /proc/meminfo ("HugePages_Free"),
// in the file's unit, or -1.
func meminfo(key string) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return n
				}
			}
		}
	}
	return -1
}
