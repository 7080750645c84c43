//go:build linux

package sealtest

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf/memfd"
)

// Desc describes a descriptor that a peer hands over where a sealed memfd is
// expected: a well-made one, a sloppy one, or something that is not a memfd
// at all. A Desc is a recipe, not a descriptor: Create makes a fresh one each
// time, in whichever process runs it (Peer.Send makes them in the peer).
// The zero Desc is invalid.
//
// Every memfd a Desc makes (except Large's) holds Pattern's bytes.
type Desc struct {
	kind  kind
	size  int64
	seals memfd.Seals
}

type kind uint8

const (
	kindMemfd kind = iota + 1
	kindLarge
	kindPipe
	kindSocket
	kindRegularFile
	kindTmpfsFile
	kindDevZero
	kindOPath
	kindDirectory
	kindEnd
)

// The seals of a memfd that Sealed makes: what Buffer.Seal applies.
const sealedSeals = memfd.SealShrink | memfd.SealGrow | memfd.SealWrite | memfd.SealSeal

// Sealed is a well-made buffer: a memfd of size bytes sealed
// shrink|grow|write|seal, as Buffer.Seal leaves it. Sealed(0) is the
// zero-length memfd, which Open, Map and Receive accept.
func Sealed(size int64) Desc { return Memfd(size, sealedSeals) }

// Unsealed is a memfd of size bytes with no seals (apart from exec, which
// newer kernels add by themselves): its size and bytes may change at any
// time. Open and Receive refuse it (sealbuf.ErrNotSealed); Map accepts it
// and guards every access.
func Unsealed(size int64) Desc { return Memfd(size, 0) }

// PartlySealed is a memfd of size bytes sealed against shrinking and growing
// but not writing: fixed size, changing bytes. Open and Receive refuse it
// (sealbuf.ErrNotSealed, naming write); Map accepts it without a guard.
func PartlySealed(size int64) Desc { return Memfd(size, memfd.SealShrink|memfd.SealGrow) }

// Memfd is a memfd of size bytes carrying the given seals.
func Memfd(size int64, seals memfd.Seals) Desc {
	return Desc{kind: kindMemfd, size: size, seals: seals}
}

// Large is a sealed memfd of size bytes that are all zero and take no memory
// (tmpfs files are sparse): for MaxSize and MapMaxSize policies, which must
// refuse it with sealbuf.ErrTooLarge before mapping anything. Sizes past what
// can be mapped at all (1<<48) are refused even without a policy.
func Large(size int64) Desc { return Desc{kind: kindLarge, size: size, seals: sealedSeals} }

// Pipe is the read end of an empty pipe whose write end is closed.
func Pipe() Desc { return Desc{kind: kindPipe} }

// Socket is one end of a UNIX stream socket pair whose other end is closed.
func Socket() Desc { return Desc{kind: kindSocket} }

// RegularFile is an unnamed regular file on a disk file system (O_TMPFILE in
// the first of os.TempDir(), the working directory and /var/tmp that is not
// tmpfs), holding Pattern's first 4096 bytes. Creating it fails where all
// three are tmpfs.
func RegularFile() Desc { return Desc{kind: kindRegularFile} }

// TmpfsFile is an unnamed regular file on tmpfs (/dev/shm) that is not a
// memfd, holding Pattern's first 4096 bytes. The kernel gives it the seal
// "seal" only, so Open and Receive refuse it (sealbuf.ErrNotSealed); it
// passes memfd.FromFile's checks, which cannot tell it from a memfd, so Map
// accepts it like an unsealed memfd.
func TmpfsFile() Desc { return Desc{kind: kindTmpfsFile} }

// DevZero is /dev/zero opened read-write: a character device that mmap
// happily maps.
func DevZero() Desc { return Desc{kind: kindDevZero} }

// OPath is an O_PATH descriptor of a sealed memfd: the right file, through a
// descriptor that can be neither read nor mapped.
func OPath() Desc { return Desc{kind: kindOPath, size: 4096, seals: sealedSeals} }

// Directory is the root directory, opened read-only.
func Directory() Desc { return Desc{kind: kindDirectory} }

// String describes d, as in "unsealed memfd of 4096 bytes".
func (d Desc) String() string {
	switch d.kind {
	case kindMemfd:
		switch d.seals {
		case sealedSeals:
			return fmt.Sprintf("sealed memfd of %d bytes", d.size)
		case 0:
			return fmt.Sprintf("unsealed memfd of %d bytes", d.size)
		}
		return fmt.Sprintf("memfd of %d bytes sealed %s", d.size, d.seals)
	case kindLarge:
		return fmt.Sprintf("large sealed memfd of %d bytes", d.size)
	case kindPipe:
		return "pipe"
	case kindSocket:
		return "socket"
	case kindRegularFile:
		return "regular file on disk"
	case kindTmpfsFile:
		return "tmpfs file"
	case kindDevZero:
		return "/dev/zero"
	case kindOPath:
		return "O_PATH descriptor of a memfd"
	case kindDirectory:
		return "directory"
	}
	return "invalid sealtest.Desc"
}

// File makes the descriptor in this process and closes it when t's test
// ends (a second Close is harmless: functions that took ownership, such as
// sealbuf.Open, close the same *os.File). It fails t if it cannot.
func (d Desc) File(t testing.TB) *os.File {
	t.Helper()
	f, err := d.Create()
	if err != nil {
		t.Fatalf("sealtest: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// Create makes the descriptor in this process. The caller owns it.
func (d Desc) Create() (*os.File, error) {
	f, err := d.create()
	if err != nil {
		return nil, fmt.Errorf("sealtest: create %s: %w", d, err)
	}
	return f, nil
}

func (d Desc) create() (*os.File, error) {
	switch d.kind {
	case kindMemfd, kindLarge:
		return newMemfd(d.kind.String(), d.size, d.seals, d.kind == kindMemfd)
	case kindPipe:
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return nil, os.NewSyscallError("pipe2", err)
		}
		unix.Close(p[1])
		return os.NewFile(uintptr(p[0]), "sealtest-pipe"), nil
	case kindSocket:
		s, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, os.NewSyscallError("socketpair", err)
		}
		unix.Close(s[1])
		return os.NewFile(uintptr(s[0]), "sealtest-socket"), nil
	case kindRegularFile:
		return regularFile()
	case kindTmpfsFile:
		return tmpfile("/dev/shm", true)
	case kindDevZero:
		return os.OpenFile("/dev/zero", os.O_RDWR, 0)
	case kindOPath:
		m, err := newMemfd("opath", d.size, d.seals, true)
		if err != nil {
			return nil, err
		}
		defer m.Close()
		var fd int
		err = control(m, func(mfd int) error {
			fd, err = unix.Open("/proc/self/fd/"+strconv.Itoa(mfd), unix.O_PATH|unix.O_CLOEXEC, 0)
			return err
		})
		if err != nil {
			return nil, os.NewSyscallError("open O_PATH", err)
		}
		return os.NewFile(uintptr(fd), "sealtest-opath"), nil
	case kindDirectory:
		fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, os.NewSyscallError("open /", err)
		}
		return os.NewFile(uintptr(fd), "/"), nil
	}
	return nil, errors.New("invalid Desc (use the constructors)")
}

func (k kind) String() string {
	if k == kindLarge {
		return "sealtest-large"
	}
	return "sealtest"
}

// noexecUnsupported records that the kernel refused MFD_NOEXEC_SEAL (before
// 6.3), so newMemfd stops asking.
var noexecUnsupported atomic.Bool

// newMemfd creates a memfd of size bytes, fills it with the pattern when
// fill is set, and adds seals.
func newMemfd(name string, size int64, seals memfd.Seals, fill bool) (*os.File, error) {
	if size < 0 {
		return nil, fmt.Errorf("negative size %d", size)
	}
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	fd, err := -1, error(unix.EINVAL)
	if !noexecUnsupported.Load() {
		fd, err = unix.MemfdCreate(name, flags|unix.MFD_NOEXEC_SEAL)
		if err == unix.EINVAL {
			noexecUnsupported.Store(true)
		}
	}
	if err == unix.EINVAL {
		fd, err = unix.MemfdCreate(name, flags)
	}
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	if err := shape(f, size, seals, fill); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// shape sizes f, writes the pattern into it when fill is set, and seals it.
func shape(f *os.File, size int64, seals memfd.Seals, fill bool) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	if fill {
		if err := writePattern(f, 0, size); err != nil {
			return err
		}
	}
	if seals == 0 {
		return nil
	}
	// Nothing maps f, yet F_SEAL_WRITE can fail with EBUSY: the kernel
	// refuses it while any page still has an extra reference after about
	// 150 ms of waiting (memfd_wait_for_pins), which a loaded machine
	// produces now and then (seen once in a million-cycle soak). It passes
	// on a later try.
	var err error
	for try := 1; ; try++ {
		err = control(f, func(fd int) error {
			_, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, int(seals))
			return err
		})
		if err != unix.EBUSY || try == 10 {
			break
		}
		time.Sleep(time.Duration(try) * 10 * time.Millisecond)
	}
	return os.NewSyscallError("fcntl F_ADD_SEALS", err)
}

// writePattern writes Pattern's bytes [off, end) into f with pwrite.
func writePattern(f *os.File, off, end int64) error {
	buf := make([]byte, min(end-off, 1<<16))
	for off < end {
		n := min(int64(len(buf)), end-off)
		fillPattern(buf[:n], off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// regularFile makes an unnamed file on the first candidate directory that
// is on a disk file system.
func regularFile() (*os.File, error) {
	wd, _ := os.Getwd()
	var errs []error
	for _, dir := range []string{os.TempDir(), wd, "/var/tmp"} {
		if dir == "" {
			continue
		}
		f, err := tmpfile(dir, false)
		if err == nil {
			return f, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("no directory on a disk file system for an unnamed file: %w", errors.Join(errs...))
}

// tmpfile opens an unnamed file (O_TMPFILE) in dir, which must (onTmpfs) or
// must not be on tmpfs, and writes Pattern's first 4096 bytes into it.
func tmpfile(dir string, onTmpfs bool) (*os.File, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	m := uint32(st.Type) // the magic is Type's low 32 bits (an int32 on 32-bit ports)
	if isTmpfs := m == unix.TMPFS_MAGIC || m == unix.HUGETLBFS_MAGIC; isTmpfs != onTmpfs {
		return nil, fmt.Errorf("%s is on tmpfs: %v", dir, isTmpfs)
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open O_TMPFILE", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(fd), dir+"/(unnamed)")
	if err := writePattern(f, 0, 4096); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// control lends f's descriptor to fn.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// Pattern returns the n bytes at offset off of every memfd a Desc makes:
// byte i is 1 + i%251, never 0, so poison zeros never pass for data.
func Pattern(off int64, n int) []byte {
	b := make([]byte, n)
	fillPattern(b, off)
	return b
}

// IsPattern reports whether b holds Pattern's bytes at off, without
// allocating.
func IsPattern(b []byte, off int64) bool {
	for len(b) > 0 {
		i := int(off % patternPeriod)
		k := min(len(b), len(patternBlock)-i)
		if string(b[:k]) != string(patternBlock[i:i+k]) {
			return false
		}
		b, off = b[k:], off+int64(k)
	}
	return true
}

const patternPeriod = 251

// patternBlock is the pattern from offset 0, long enough that any offset's
// bytes can be copied from it in 64 KiB runs.
var patternBlock = func() []byte {
	b := make([]byte, patternPeriod*(1+(64<<10)/patternPeriod))
	for i := range b {
		b[i] = byte(1 + i%patternPeriod)
	}
	return b
}()

func fillPattern(b []byte, off int64) {
	for len(b) > 0 {
		i := int(off % patternPeriod)
		k := copy(b, patternBlock[i:])
		b, off = b[k:], off+int64(k)
	}
}
