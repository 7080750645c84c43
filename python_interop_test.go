//go:build linux

package sealbuf_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
	"github.com/sealbuf/sealbuf/pool"
)

// The Python package in python/sealbuf speaks Conn's and the pool's wire
// formats with nothing but Python's standard library. These tests drive it
// in python3 subprocesses (python/tests/interop_peer.py), both ways: Go
// sends sealed buffers and Python checks them (and refuses what it must);
// Python sends and Go checks; a Go Pool of either flavour feeds Python's
// accept_pool; and Python dials Go's listener and the other way round.
// SEALBUF_PYTHON names another interpreter than python3.

// pyInterpreter finds the interpreter and python/ (relative to the test's
// working directory, the package directory), once.
var pyInterpreter = sync.OnceValues(func() (string, error) {
	py := os.Getenv("SEALBUF_PYTHON")
	if py == "" {
		py = "python3"
	}
	path, err := exec.LookPath(py)
	if err != nil {
		return "", fmt.Errorf("skip: %s not found: %v", py, err)
	}
	cmd := exec.Command(path, "-c", "import sys; sys.exit(0 if sys.version_info >= (3, 9) else 3)")
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("skip: %s is older than Python 3.9, which python/sealbuf needs: %v", path, err)
	}
	return path, nil
})

func pyDir(t testing.TB) string {
	dir, err := filepath.Abs("python")
	require.NoError(t, err)
	return dir
}

// pyProc is a running Python peer.
type pyProc struct {
	cmd            *exec.Cmd
	stdout, stderr *os.File // files, so no pipe or copying goroutine comes and goes in this process
	waited         bool
}

// pyStart starts python/tests/interop_peer.py with args, and with sock as
// its descriptor 3 when sock is not nil (the parent's copy is closed once
// the child has it). It skips the test when there is no Python 3.9+.
func pyStart(t testing.TB, sock *os.File, args ...string) *pyProc {
	t.Helper()
	py, err := pyInterpreter()
	if err != nil {
		t.Skip(strings.TrimPrefix(err.Error(), "skip: "))
	}
	dir := pyDir(t)
	cmd := exec.Command(py, append([]string{filepath.Join(dir, "tests", "interop_peer.py")}, args...)...)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir, "PYTHONDONTWRITEBYTECODE=1")
	p := &pyProc{cmd: cmd}
	p.stdout, err = os.CreateTemp(t.TempDir(), "stdout")
	require.NoError(t, err)
	p.stderr, err = os.CreateTemp(t.TempDir(), "stderr")
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if sock != nil {
		cmd.ExtraFiles = []*os.File{sock}
	}
	require.NoError(t, cmd.Start())
	if sock != nil {
		require.NoError(t, sock.Close())
	}
	t.Cleanup(func() {
		if !p.waited {
			_ = p.cmd.Process.Kill()
			_ = p.wait()
		}
	})
	return p
}

func (p *pyProc) output(f *os.File) string {
	b, _ := os.ReadFile(f.Name())
	return string(b)
}

func (p *pyProc) wait() error {
	err := p.cmd.Wait()
	p.waited = true
	_ = p.stdout.Close()
	_ = p.stderr.Close()
	if err != nil {
		return fmt.Errorf("python peer: %w: %s", err, p.output(p.stderr))
	}
	return nil
}

// pyPair returns a Conn and the raw other end of a new socketpair of type
// typ, for the Python peer.
func pyPair(t testing.TB, typ int) (*sealbuf.Conn, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	mine, theirs := os.NewFile(uintptr(fds[0]), "go-end"), os.NewFile(uintptr(fds[1]), "python-end")
	t.Cleanup(func() { _ = theirs.Close() })
	fc, err := net.FileConn(mine)
	require.NoError(t, err)
	require.NoError(t, mine.Close())
	c := sealbuf.NewConn(fc.(*net.UnixConn))
	t.Cleanup(func() { _ = c.Close() })
	return c, theirs
}

// pyCounts counts this process's descriptors, memfds and memfd mappings.
func pyCounts(t testing.TB) [3]int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	c := [3]int{len(ents)}
	for _, e := range ents {
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(link, "/memfd:") {
			c[1]++
		}
	}
	maps, err := os.ReadFile("/proc/self/maps")
	require.NoError(t, err)
	c[2] = strings.Count(string(maps), "/memfd:")
	return c
}

// pyReport is what the Python peer found in one message.
type pyReport struct {
	Header  string `json:"header"`
	Error   string `json:"error"`
	Message string `json:"message"`
	FDs     int    `json:"fds"`
	Bufs    []struct {
		Size     int    `json:"size"`
		Seals    uint32 `json:"seals"`
		SHA256   string `json:"sha256"`
		ReadOnly bool   `json:"readonly"`
		Write    string `json:"write"`
		Shrink   string `json:"shrink"`
		Grow     string `json:"grow"`
	} `json:"bufs"`
}

// TestPythonReceive: Go sends sealed buffers (and descriptors Python must
// refuse); Python receives with Conn.receive, checks seals and contents,
// reports, and replies to "echo" messages with a sealed buffer of its own.
func TestPythonReceive(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		c, sock := pyPair(t, typ)
		one := connSealed(t, []byte("one"))
		other := connSealed(t, connPattern("other", 5000))
		empty := connSealed(t, nil)
		mib := connSealed(t, connPattern("mib", 1<<20))
		many := make([]*sealbuf.Sealed, 200)
		for i := range many {
			many[i] = []*sealbuf.Sealed{one, other, empty, mib}[i%4]
		}
		unsealed := connMemfd(t, []byte("unsealed"), 0)
		partly := connMemfd(t, []byte("partly"), memfd.SealShrink|memfd.SealGrow)
		pr, pw, err := os.Pipe()
		require.NoError(t, err)
		t.Cleanup(func() { _ = pr.Close(); _ = pw.Close() })
		py := pyStart(t, sock, "receive")

		fds := -1
		for _, m := range []struct {
			header string
			bufs   []*sealbuf.Sealed
			files  []*os.File // sent raw, with SendFiles
			want   string     // the error class Python must raise
		}{
			{header: "one", bufs: []*sealbuf.Sealed{one}},
			{header: "same twice", bufs: []*sealbuf.Sealed{one, other, one}},
			{header: "", bufs: []*sealbuf.Sealed{other}},
			{header: "zero bytes", bufs: []*sealbuf.Sealed{empty}},
			{header: "header only"},
			{header: "a mebibyte", bufs: []*sealbuf.Sealed{mib}},
			{header: "two hundred", bufs: many},
			{header: "unsealed", files: []*os.File{unsealed}, want: "NotSealedError"},
			{header: "partly sealed", files: []*os.File{partly}, want: "NotSealedError"},
			{header: "pipe", files: []*os.File{pr}, want: "NotMemfdError"},
			{header: "one bad of three", files: []*os.File{partly, pr, partly}, want: "NotSealedError"},
			{header: "echo", bufs: []*sealbuf.Sealed{one, other}},
		} {
			if m.files != nil {
				require.NoError(t, c.SendFiles([]byte(m.header), m.files...))
			} else {
				require.NoError(t, c.Send([]byte(m.header), m.bufs...))
			}
			h := make([]byte, 1<<20)
			n, bufs, err := c.Receive(h)
			require.NoError(t, err, "%s: %s", m.header, py.output(py.stderr))
			var r pyReport
			require.NoError(t, json.Unmarshal(h[:n], &r), "%s", h[:n])
			if fds < 0 {
				fds = r.FDs
			}
			require.Equal(t, fds, r.FDs, "%s: Python's descriptor count moved", m.header)
			if m.want != "" {
				require.Equal(t, m.want, r.Error, "%s: %s", m.header, r.Message)
				require.Contains(t, r.Message, "closed", m.header)
				require.Empty(t, bufs)
				continue
			}
			require.Empty(t, r.Error, "%s: %s", m.header, r.Message)
			require.Equal(t, m.header, r.Header)
			require.Len(t, r.Bufs, len(m.bufs), m.header)
			var echo []byte
			for i, got := range r.Bufs {
				s := m.bufs[i]
				echo = append(echo, s.Bytes()...)
				require.Equal(t, s.Len(), got.Size, "%s: buffer %d", m.header, i)
				require.True(t, memfd.Seals(got.Seals).Has(memfd.SealImmutable), "%s: buffer %d: Python sees seals %s", m.header, i, memfd.Seals(got.Seals))
				require.Equal(t, connSHA(s.Bytes()), got.SHA256, "%s: buffer %d", m.header, i)
				require.True(t, got.ReadOnly, "%s: buffer %d: a writable view", m.header, i)
				require.Equal(t, "refused", got.Write, "%s: buffer %d: write", m.header, i)
				require.Equal(t, "refused", got.Shrink, "%s: buffer %d: shrink", m.header, i)
				require.Equal(t, "refused", got.Grow, "%s: buffer %d: grow", m.header, i)
			}
			if m.header != "echo" {
				require.Empty(t, bufs)
				continue
			}
			require.Len(t, bufs, 1, "Python's reply")
			require.True(t, bufs[0].Seals().Has(memfd.SealImmutable|memfd.SealSeal), "Python's from_bytes seals: %s", bufs[0].Seals())
			require.Equal(t, "py-echo", bufs[0].File().Name())
			require.True(t, bytes.Equal(echo, bufs[0].Bytes()), "Python's reply")
			require.NoError(t, bufs[0].Close())
		}
		require.NoError(t, c.Close())
		require.NoError(t, py.wait())
		require.Equal(t, "one", string(one.Bytes())) // still ours, intact
	})
}

// TestPythonSend: Python sends with Conn.send (from_bytes buffers) and
// send_files (hostile descriptors); Go receives and refuses what it must.
func TestPythonSend(t *testing.T) {
	testutil.EachSockType(t, func(t *testing.T, typ int) {
		testutil.NoGC(t)
		c, sock := pyPair(t, typ)
		dir := t.TempDir()
		regular := filepath.Join(dir, "regular")
		require.NoError(t, os.WriteFile(regular, []byte("a regular file"), 0o600))
		var sfs unix.Statfs_t
		require.NoError(t, unix.Statfs(dir, &sfs))
		regularErr := memfd.ErrNotMemfd
		if sfs.Type == unix.TMPFS_MAGIC {
			regularErr = sealbuf.ErrNotSealed // a tmpfs file is a memfd without seals
		}
		py := pyStart(t, sock, "send", regular)
		before := pyCounts(t)

		many := make([][]byte, 16)
		for i := range many {
			many[i] = connPattern(fmt.Sprint("py-many-", i), 1000+i)
		}
		for _, m := range []struct {
			header string
			want   error
			bufs   [][]byte
		}{
			{"sealed", nil, [][]byte{connPattern("py-sealed", 10000)}},
			{"unsealed", sealbuf.ErrNotSealed, nil},
			{"shrink-only", sealbuf.ErrNotSealed, nil},
			{"shrink-grow", sealbuf.ErrNotSealed, nil},
			{"pipe", memfd.ErrNotMemfd, nil},
			{"regular", regularErr, nil},
			{"many", nil, many},
			{"mixed", memfd.ErrNotMemfd, nil},
			{"many-one-unsealed", sealbuf.ErrNotSealed, nil},
			{"empty", nil, [][]byte{{}}},
			{"header-only", nil, nil},
			{"sealed-again", nil, [][]byte{connPattern("py-sealed", 10000)}},
			{"big", nil, [][]byte{connPattern("py-big", 8<<20)}},
		} {
			h := make([]byte, 64)
			n, bufs, err := c.Receive(h)
			if m.want != nil {
				require.ErrorIs(t, err, m.want, "%s: %v", m.header, err)
				require.Nil(t, bufs, m.header)
				require.Equal(t, before, pyCounts(t), "%s: every descriptor of a refused message is closed", m.header)
				continue
			}
			require.NoError(t, err, "%s: %s", m.header, py.output(py.stderr))
			require.Equal(t, m.header, string(h[:n]))
			require.Len(t, bufs, len(m.bufs), m.header)
			for i, b := range bufs {
				require.True(t, bytes.Equal(m.bufs[i], b.Bytes()), "%s: buffer %d", m.header, i)
				require.True(t, b.Seals().Has(memfd.SealImmutable|memfd.SealSeal), "%s: seals %s", m.header, b.Seals())
				require.NoError(t, b.Close())
			}
			require.Equal(t, before, pyCounts(t), m.header)
		}
		_, bufs, err := c.Receive(make([]byte, 64))
		require.ErrorIs(t, err, io.EOF, "%v: %s", err, py.output(py.stderr))
		require.Nil(t, bufs)
		require.NoError(t, py.wait())
	})
}

// TestPythonPool: a Go Pool (socket records, then the futex ring) feeds
// Python's accept_pool over both socket types; Python checks every
// message's bytes and releases it, so the 4 slots are reused many times.
// The slot size is not a whole number of pages: Go's stride is then the
// slot size rounded up to a page, the widest stride accept_pool accepts.
func TestPythonPool(t *testing.T) {
	const count, slotSize = 200, 64<<10 + 100
	for _, flavour := range []string{"socket", "futex"} {
		t.Run(flavour, func(t *testing.T) {
			testutil.EachSockType(t, func(t *testing.T, typ int) {
				c, sock := pyPair(t, typ)
				py := pyStart(t, sock, "pool", flavour, fmt.Sprint(count))
				var opts []pool.Option
				if flavour == "futex" {
					opts = append(opts, pool.WithFutex())
				}
				p, err := pool.New(c, 4, slotSize, opts...)
				require.NoError(t, err)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				total := 0
				for i := range count {
					n := (i*7919)%slotSize + 1
					if i%50 == 0 {
						n = 0
					}
					slot, err := p.Acquire(ctx)
					require.NoError(t, err, "message %d: %s", i, py.output(py.stderr))
					copy(slot.Bytes(), connPattern(fmt.Sprint("pool-", i), n))
					require.NoError(t, slot.Send(n, fmt.Appendf(nil, "%d %d", i, n)), "message %d", i)
					total += n
				}
				require.NoError(t, p.Close())
				require.NoError(t, py.wait())
				var sum struct {
					Received, Bytes, Slots int
					Futex                  bool
					Seals                  uint32
				}
				require.NoError(t, json.Unmarshal([]byte(py.output(py.stdout)), &sum), py.output(py.stdout))
				require.Equal(t, count, sum.Received)
				require.Equal(t, total, sum.Bytes)
				require.Equal(t, 4, sum.Slots)
				require.Equal(t, flavour == "futex", sum.Futex)
				require.True(t, memfd.Seals(sum.Seals).Has(memfd.SealShrink|memfd.SealGrow|memfd.SealFutureWrite), "%s", memfd.Seals(sum.Seals))
			})
		})
	}
}

// TestPythonDialListen: Python's dial reaches a Go listener, and Go
// reaches Python's listen; Python forwards the memfds it received.
func TestPythonDialListen(t *testing.T) {
	t.Run("python-dials", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "go.sock")
		ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
		require.NoError(t, err)
		defer ln.Close()
		py := pyStart(t, nil, "dial", path)
		require.NoError(t, ln.SetDeadline(time.Now().Add(30*time.Second)))
		uc, err := ln.AcceptUnix()
		require.NoError(t, err, py.output(py.stderr))
		c := sealbuf.NewConn(uc)
		defer c.Close()
		h := make([]byte, 64)
		n, bufs, err := c.Receive(h)
		require.NoError(t, err)
		require.Equal(t, "dialled", string(h[:n]))
		require.Len(t, bufs, 1)
		require.True(t, bytes.Equal(connPattern("dial", 5000), bufs[0].Bytes()))
		require.NoError(t, bufs[0].Close())
		require.NoError(t, c.Send([]byte("ok"), connSealed(t, connPattern("go-reply", 3000))))
		require.NoError(t, py.wait())
	})
	t.Run("go-dials", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "py.sock")
		py := pyStart(t, nil, "listen", path)
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(py.output(py.stdout), "ready") {
			require.True(t, time.Now().Before(deadline), "Python never listened: %s", py.output(py.stderr))
			time.Sleep(5 * time.Millisecond)
		}
		uc, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
		require.NoError(t, err)
		c := sealbuf.NewConn(uc)
		defer c.Close()
		sent := connSealed(t, connPattern("go-dials", 7000))
		require.NoError(t, c.Send([]byte("hello"), sent, sent))
		h := make([]byte, 64)
		n, bufs, err := c.Receive(h)
		require.NoError(t, err, py.output(py.stderr))
		require.Equal(t, "echo hello", string(h[:n]))
		require.Len(t, bufs, 2)
		for _, b := range bufs {
			require.True(t, bytes.Equal(sent.Bytes(), b.Bytes()))
			require.NoError(t, b.Close())
		}
		require.NoError(t, py.wait())
		_, err = os.Stat(path)
		require.True(t, errors.Is(err, os.ErrNotExist), "Python's listener left its socket file: %v", err)
	})
}
