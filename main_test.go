//go:build linux

package sealbuf_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
)

// TestMain runs a child role (internal/testutil) when the test binary is
// run again as one, else the tests, checked for leaked goroutines.
func TestMain(m *testing.M) { testutil.Main(m) }

// The peer roles play the peer process: they get the memfd as descriptor 3
// (exec.Cmd.ExtraFiles) and resize or write it, the way a misbehaving
// producer would. Role "peer-MODE" runs peerMain(MODE, arg).
var (
	_ = testutil.Role("peer-truncate", func(arg string) int { return peerMain("truncate", arg) })
	_ = testutil.Role("peer-grow-write", func(arg string) int { return peerMain("grow-write", arg) })
	_ = testutil.Role("peer-flap", func(arg string) int { return peerMain("flap", arg) })
)

// peerMain is the body of the peer process. Modes:
//
//	truncate    arg "SIZE": ftruncate fd 3 to SIZE
//	grow-write  arg "SIZE:OFF:DATA": ftruncate fd 3 to SIZE, then pwrite DATA at OFF
//	flap        arg "SIZE:CUT:MS:BYTE": for MS milliseconds, cut the file to
//	            CUT bytes, then pwrite BYTE over [CUT, SIZE) (which grows it
//	            back page by page, each page holding BYTE before it exists)
func peerMain(mode, arg string) int {
	f := testutil.ChildFile(0, "peer-memfd")
	err := func() error {
		parts := strings.SplitN(arg, ":", 4)
		num := func(i int) int64 {
			n, err := strconv.ParseInt(parts[i], 10, 64)
			if err != nil {
				panic(fmt.Sprintf("peer %s: bad argument %q", mode, arg))
			}
			return n
		}
		switch mode {
		case "truncate":
			return f.Truncate(num(0))
		case "grow-write":
			if err := f.Truncate(num(0)); err != nil {
				return err
			}
			_, err := f.WriteAt([]byte(parts[2]), num(1))
			return err
		case "flap":
			size, cut := num(0), num(1)
			until := time.Now().Add(time.Duration(num(2)) * time.Millisecond)
			fill := make([]byte, size-cut)
			for i := range fill {
				fill[i] = byte(num(3))
			}
			for cycles := 0; cycles == 0 || time.Now().Before(until); cycles++ {
				if err := f.Truncate(cut); err != nil {
					return err
				}
				if _, err := f.WriteAt(fill, cut); err != nil {
					return err
				}
			}
			return nil
		}
		return fmt.Errorf("unknown peer mode %q", mode)
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		return 1
	}
	return 0
}

// peerCmd returns a command that runs the peer process in mode on f's memfd.
// The caller must close the returned *os.File once the command has started.
func peerCmd(f *memfd.File, mode, arg string) (*exec.Cmd, *os.File, error) {
	dup, err := procOpenErr(f, os.O_RDWR)
	if err != nil {
		return nil, nil, err
	}
	cmd := testutil.Command("peer-"+mode, arg)
	cmd.ExtraFiles = []*os.File{dup}
	return cmd, dup, nil
}

// runPeer runs the peer process in mode and waits for it. It returns an
// error instead of failing the test so that it can run inside Access.
func runPeer(f *memfd.File, mode, arg string) error {
	cmd, dup, err := peerCmd(f, mode, arg)
	if err != nil {
		return err
	}
	defer dup.Close()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("peer %s %s: %w: %s", mode, arg, err, out)
	}
	return nil
}

// newTestMemfd creates a memfd of size bytes holding pattern, with seals
// added, closed when the test ends.
func newTestMemfd(t testing.TB, size int64, seals memfd.Seals) *memfd.File {
	t.Helper()
	f, err := memfd.Create("sealbuf-test")
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	if size > 0 {
		require.NoError(t, f.Truncate(size))
		_, err = f.WriteAt(patternBytes(int(min(size, 4<<20))), 0)
		require.NoError(t, err)
	}
	if seals != 0 {
		require.NoError(t, f.AddSeals(seals))
	}
	return f
}

// procOpen opens f's memfd again through /proc/self/fd, as a descriptor
// received from a peer would arrive: a new *os.File the caller owns.
func procOpen(t testing.TB, f *memfd.File, flag int) *os.File {
	t.Helper()
	out, err := procOpenErr(f, flag)
	require.NoError(t, err)
	return out
}

func procOpenErr(f *memfd.File, flag int) (*os.File, error) {
	var out *os.File
	err := f.Control(func(fd int) error {
		var err error
		out, err = os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), flag, 0)
		return err
	})
	return out, err
}

// closeLater closes f when the test ends, for files a failed Open or Map
// left with the caller.
func closeLater(t testing.TB, f *os.File) {
	t.Cleanup(func() { _ = f.Close() })
}

// pattern is the byte the tests put at offset i; it is never 0 or 0xff, so a
// zero read where pattern was expected is poison, and IndexByte(b, 0xff)
// scans a whole window.
func pattern(i int) byte { return byte(1 + i%251) }

func patternBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = pattern(i)
	}
	return b
}

// requireTruncated checks that err reports a truncation: ErrTruncated,
// never io.EOF or success.
func requireTruncated(t testing.TB, err error, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	require.ErrorIs(t, err, sealbuf.ErrTruncated, msgAndArgs...)
	require.False(t, errors.Is(err, os.ErrClosed), "a truncation is not a close: %v", err)
}

// requireClosed checks that err wraps os.ErrClosed.
func requireClosed(t testing.TB, err error, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	require.ErrorIs(t, err, os.ErrClosed, msgAndArgs...)
}

var page = os.Getpagesize()

// Sinks keep the compiler from dropping the accesses under test.
var (
	sinkByte   byte
	sinkBool   bool
	sinkInt    int
	sinkUint32 uint32
	sinkUint64 uint64
	sinkString string
	sinkSum    [32]byte
)

// fdFlags returns the F_GETFL flags of f.
func fdFlags(t testing.TB, f *os.File) int {
	t.Helper()
	rc, err := f.SyscallConn()
	require.NoError(t, err)
	var fl int
	var ferr error
	require.NoError(t, rc.Control(func(fd uintptr) { fl, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) }))
	require.NoError(t, ferr)
	return fl
}

// sscanMaps parses the address range and permissions of a /proc/self/maps line.
func sscanMaps(line string, lo, hi *uintptr, perms *string) (int, error) {
	return fmt.Sscanf(line, "%x-%x %s", lo, hi, perms)
}

var errBadBytes = errors.New("read returned bytes that were never in the file")

func isClosed(err error) bool { return errors.Is(err, os.ErrClosed) }
