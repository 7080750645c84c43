//go:build linux

package sealbuf_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
)

// The Python peer proves the unixpacket wire format is what the contract
// says — payload = the header, SCM_RIGHTS = the memfds in order — by
// speaking it with nothing but Python's standard library.
const connPythonPeer = `
import fcntl, hashlib, json, os, socket, sys

SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def pattern(seed, n):
    s = hashlib.sha256(seed.encode()).digest()
    return (s * (n // len(s) + 1))[:n]


def memfd(name, data, seals):
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.pwrite(fd, data, 0)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


def send(sock, label, fds):
    socket.send_fds(sock, [label.encode()], fds)


def role_send(sock, regular):
    r, w = os.pipe()
    reg = os.open(regular, os.O_RDONLY | os.O_CLOEXEC)
    sealed = memfd("py-sealed", pattern("py-sealed", 10000), SEALS)
    send(sock, "sealed", [sealed])
    send(sock, "unsealed", [memfd("py-unsealed", b"open", 0)])
    send(sock, "shrink-only", [memfd("py-shrink", b"shrink", fcntl.F_SEAL_SHRINK)])
    send(sock, "shrink-grow", [memfd("py-size", b"size", fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)])
    send(sock, "pipe", [r])
    send(sock, "regular", [reg])
    many = [memfd("py-many-%d" % i, pattern("py-many-%d" % i, 1000 + i), SEALS) for i in range(16)]
    send(sock, "many", many)
    send(sock, "mixed", [sealed, r, sealed])
    send(sock, "many-one-unsealed", many[:8] + [memfd("py-bad", b"bad", 0)] + many[8:])
    send(sock, "empty", [memfd("py-empty", b"", SEALS)])
    sock.send(b"header-only")
    send(sock, "sealed-again", [sealed])


def attempt(fn):
    try:
        fn()
        return "allowed"
    except PermissionError:
        return "refused"
    except OSError as e:
        return "error: " + str(e)


def role_recv(sock):
    while True:
        msg, fds, flags, _ = socket.recv_fds(sock, 1 << 20, 253)
        if not msg and not fds:
            return
        report = {"header": msg.decode(), "flags": flags, "bufs": []}
        for fd in fds:
            size = os.fstat(fd).st_size
            data = os.pread(fd, size, 0) if size else b""
            report["bufs"].append({
                "size": size,
                "seals": fcntl.fcntl(fd, fcntl.F_GET_SEALS),
                "sha256": hashlib.sha256(data).hexdigest(),
                "write": attempt(lambda: os.pwrite(fd, b"x", 0)),
                "shrink": attempt(lambda: os.ftruncate(fd, size - 1)) if size else "refused",
                "grow": attempt(lambda: os.ftruncate(fd, size + 1)),
            })
            os.close(fd)
        sock.send(json.dumps(report).encode())


def main():
    sock = socket.socket(fileno=3)
    if sock.type != socket.SOCK_SEQPACKET:
        sys.exit("descriptor 3 is not a SOCK_SEQPACKET socket: %r" % sock.type)
    if sys.argv[1] == "send":
        role_send(sock, sys.argv[2])
    else:
        role_recv(sock)
    sock.close()


main()
`

// connPython starts the Python peer in role with sock as its descriptor 3
// (the parent's copy of sock is closed once Python has it), or skips the
// test when python3 or the needed standard library functions are missing.
func connPython(t *testing.T, sock *os.File, args ...string) *childProc {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found:", err)
	}
	if out, err := exec.Command(py, "-c", "import socket, os, fcntl; socket.send_fds; socket.recv_fds; os.memfd_create; fcntl.F_ADD_SEALS").CombinedOutput(); err != nil {
		t.Skipf("python3 lacks socket.send_fds, os.memfd_create or fcntl seals: %v: %s", err, out)
	}
	script := filepath.Join(t.TempDir(), "peer.py")
	require.NoError(t, os.WriteFile(script, []byte(connPythonPeer), 0o600))
	return newChildProc(t, exec.Command(py, append([]string{script}, args...)...), sock)
}

// TestPythonConnSend: Python sends, Go receives and refuses what it must.
func TestPythonConnSend(t *testing.T) {
	connNoGC(t)
	c, sock := connRawPair(t, unix.SOCK_SEQPACKET)
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	require.NoError(t, os.WriteFile(regular, []byte("a regular file"), 0o600))
	var sfs unix.Statfs_t
	require.NoError(t, unix.Statfs(dir, &sfs))
	regularErr := memfd.ErrNotMemfd
	if sfs.Type == unix.TMPFS_MAGIC {
		regularErr = sealbuf.ErrNotSealed // a tmpfs file is a memfd without seals
	}
	py := connPython(t, sock, "send", regular)
	before := connCount(t)

	sealed := func(seed string, n int) []byte { return connPattern(seed, n) }
	many := make([][]byte, 16)
	for i := range many {
		many[i] = sealed(fmt.Sprint("py-many-", i), 1000+i)
	}
	for _, m := range []struct {
		header string
		want   error
		bufs   [][]byte
	}{
		{"sealed", nil, [][]byte{sealed("py-sealed", 10000)}},
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
		{"sealed-again", nil, [][]byte{sealed("py-sealed", 10000)}},
	} {
		h := make([]byte, 64)
		n, bufs, err := c.Receive(h)
		if m.want != nil {
			require.ErrorIs(t, err, m.want, "%s: %v", m.header, err)
			require.Nil(t, bufs, m.header)
			connRequireFlat(t, before, "%s: every descriptor of a refused message is closed", m.header)
			continue
		}
		require.NoError(t, err, "%s: %s", m.header, py.stderr())
		require.Equal(t, m.header, string(h[:n]))
		require.Len(t, bufs, len(m.bufs), m.header)
		for i, b := range bufs {
			require.True(t, bytes.Equal(m.bufs[i], b.Bytes()), "%s: buffer %d", m.header, i)
			require.True(t, b.Seals().Has(memfd.SealImmutable), "%s: seals %s", m.header, b.Seals())
		}
		connCloseAll(bufs)
		connRequireFlat(t, before, m.header)
	}
	_, bufs, err := c.Receive(make([]byte, 64))
	require.ErrorIs(t, err, io.EOF, "%v: %s", err, py.stderr())
	require.Nil(t, bufs)
	require.NoError(t, py.wait())
}

// connPythonReport is what the Python peer found in one message.
type connPythonReport struct {
	Header string `json:"header"`
	Flags  int    `json:"flags"`
	Bufs   []struct {
		Size   int    `json:"size"`
		Seals  uint32 `json:"seals"`
		SHA256 string `json:"sha256"`
		Write  string `json:"write"`
		Shrink string `json:"shrink"`
		Grow   string `json:"grow"`
	} `json:"bufs"`
}

// TestPythonConnReceive: Go sends, Python receives with socket.recv_fds,
// checks the seals and hashes the contents, and reports back.
func TestPythonConnReceive(t *testing.T) {
	c, sock := connRawPair(t, unix.SOCK_SEQPACKET)
	one := connSealed(t, []byte("one"))
	other := connSealed(t, connPattern("other", 5000))
	empty := connSealed(t, nil)
	b, err := sealbuf.New(1 << 20)
	require.NoError(t, err)
	copy(b.Bytes(), connPattern("mib", 1<<20))
	mib, err := b.Seal()
	require.NoError(t, err)
	t.Cleanup(func() { _ = mib.Close() })
	many := make([]*sealbuf.Sealed, 200)
	for i := range many {
		many[i] = []*sealbuf.Sealed{one, other, empty, mib}[i%4]
	}
	py := connPython(t, sock, "recv")

	for _, m := range []struct {
		header string
		bufs   []*sealbuf.Sealed
	}{
		{"one", []*sealbuf.Sealed{one}},
		{"same twice", []*sealbuf.Sealed{one, other, one}},
		{"", []*sealbuf.Sealed{other}},
		{"zero bytes", []*sealbuf.Sealed{empty}},
		{"header only", nil},
		{"a mebibyte", []*sealbuf.Sealed{mib}},
		{"two hundred", many},
	} {
		require.NoError(t, c.Send([]byte(m.header), m.bufs...))
		h := make([]byte, 1<<20)
		n, bufs, err := c.Receive(h)
		require.NoError(t, err, "%s: %s", m.header, py.stderr())
		require.Empty(t, bufs)
		var r connPythonReport
		require.NoError(t, json.Unmarshal(h[:n], &r), "%s", h[:n])
		require.Equal(t, m.header, r.Header)
		require.Zero(t, r.Flags&unix.MSG_CTRUNC, "Python saw a truncated control message")
		require.Len(t, r.Bufs, len(m.bufs), m.header)
		for i, got := range r.Bufs {
			s := m.bufs[i]
			require.Equal(t, s.Len(), got.Size, "%s: buffer %d", m.header, i)
			require.True(t, memfd.Seals(got.Seals).Has(memfd.SealImmutable), "%s: buffer %d: Python sees seals %s", m.header, i, memfd.Seals(got.Seals))
			require.Equal(t, connSHA(s.Bytes()), got.SHA256, "%s: buffer %d", m.header, i)
			require.Equal(t, "refused", got.Write, "%s: buffer %d: write", m.header, i)
			require.Equal(t, "refused", got.Shrink, "%s: buffer %d: shrink", m.header, i)
			require.Equal(t, "refused", got.Grow, "%s: buffer %d: grow", m.header, i)
		}
	}
	require.NoError(t, c.Close())
	require.NoError(t, py.wait())
	// The buffers we sent are still ours and intact.
	require.Equal(t, "one", string(one.Bytes()))
}
