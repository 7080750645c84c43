//go:build linux

package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
)

func init() {
	register(command{name: "demo", help: "a producer and a consumer process hand sealed buffers over zero-copy", run: runDemo})
	children["demo-consumer"] = demoConsumer
}

// runDemo is the README's main job: a real producer (this process) and a real
// consumer (a re-executed child) share sealed buffers, then the producer
// misbehaves and the consumer survives it.
func runDemo(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("demo takes no arguments")
	}
	say := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }

	say("== 1. What this kernel offers")
	kernelFacts(say)

	say("\n== 2. A sealed buffer refuses every change, even from its producer")
	if err := sealingShown(say); err != nil {
		return err
	}

	say("\n== 3. Handing sealed buffers to a consumer process (zero-copy, over a unixpacket socket)")
	conn, child, err := startConsumer(stdout, stderr)
	if err != nil {
		return err
	}
	defer child.Wait()
	defer conn.Close()
	for _, size := range []int{4 << 10, 1 << 20, 64 << 20} {
		if err := handOver(conn, size, say); err != nil {
			return err
		}
	}

	say("\n== 4. A hostile producer: an unsealed buffer is refused")
	if err := sendUnsealed(conn, say); err != nil {
		return err
	}

	say("\n== 5. A hostile producer: truncating a shared buffer while the consumer reads it")
	if err := truncateUnderReader(conn, say); err != nil {
		return err
	}
	if err := conn.Send([]byte("bye")); err != nil {
		return err
	}
	if err := child.Wait(); err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	say("consumer exited cleanly (status 0): no SIGBUS, no crash")

	say("\n== 6. Per-message time, sealbuf (a fresh sealed buffer per message, and a pool of reused slots) vs copying the bytes through a socket (two processes, one CPU)")
	sizes := []int64{4 << 10, 1 << 20, 64 << 20}
	if err := handoffTable(stdout, []string{"socket", "sealed", "pool"}, sizes, 300*time.Millisecond); err != nil {
		fmt.Fprintf(stderr, "benchmark table skipped: %v\n", err)
	}
	say("\nMore: `go run ./cmd/sealbuf bench` for every mode; `go run ./cmd/sealbuf inspect` lists memfds held by processes.")
	return nil
}

func kernelFacts(say func(string, ...any)) {
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		say("kernel:      %s", unix.ByteSliceToString(uts.Release[:]))
	}
	f, err := memfd.Create("probe")
	if err != nil {
		say("memfd:       unavailable: %v", err)
		return
	}
	defer f.Close()
	seals, _ := f.Seals()
	if seals.Has(memfd.SealExec) {
		say("no-exec:     yes (MFD_NOEXEC_SEAL: new memfds start sealed %s)", seals)
	} else {
		say("no-exec:     no (kernel before 6.3: memfds are created without it)")
	}
	h, err := memfd.Create("probe-huge", memfd.WithHugeTLB(0))
	if err != nil {
		say("huge pages:  memfd_create(MFD_HUGETLB) refused: %v", err)
		return
	}
	h.Close()
	nr, _ := os.ReadFile("/proc/sys/vm/nr_hugepages")
	say("huge pages:  supported; pool has %s page(s) reserved (/proc/sys/vm/nr_hugepages)", strings.TrimSpace(string(nr)))
}

func sealingShown(say func(string, ...any)) error {
	b, err := sealbuf.New(4096, sealbuf.WithName("demo"))
	if err != nil {
		return err
	}
	copy(b.Bytes(), "hello from the producer")
	s, err := b.Seal()
	if err != nil {
		b.Close()
		return err
	}
	defer s.Close()
	say("sealed %q: %d bytes, seals %s", s.File().Name(), s.Len(), s.Seals())
	_, err = s.File().WriteAt([]byte("tamper"), 0)
	say("write by the producer:    refused: %v", errnoOf(err))
	err = s.File().Truncate(0)
	say("truncate by the producer: refused: %v", errnoOf(err))
	say("the bytes still read:     %q", string(s.Bytes()[:23]))
	return nil
}

func errnoOf(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return fmt.Sprintf("%s (%s)", unix.ErrnoName(errno), errno)
	}
	if err == nil {
		return "NOT REFUSED"
	}
	return err.Error()
}

// startConsumer re-executes this binary as the consumer, connected by a
// unixpacket socket pair (sealbuf.Pair): the consumer gets its end as
// descriptor 3 and adopts it with sealbuf.ExtraFile.
func startConsumer(stdout, stderr io.Writer) (*sealbuf.Conn, *exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	conn, theirs, err := sealbuf.Pair()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childRoleEnv+"=demo-consumer")
	cmd.ExtraFiles = []*os.File{theirs} // descriptor 3 in the child: sealbuf.ExtraFile(0)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err = cmd.Start()
	theirs.Close() // the child has its own copy; ours would hide its exit
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, cmd, nil
}

func handOver(conn *sealbuf.Conn, size int, say func(string, ...any)) error {
	b, err := sealbuf.New(size, sealbuf.WithName(fmt.Sprintf("frame-%s", human(size))))
	if err != nil {
		return err
	}
	p := b.Bytes()
	for i := range p {
		p[i] = byte(i * 7)
	}
	sum := sha256.Sum256(p)
	s, err := b.Seal()
	if err != nil {
		b.Close()
		return err
	}
	start := time.Now()
	if err := conn.SendAndClose([]byte("sealed"), s); err != nil {
		return err
	}
	reply := make([]byte, 256)
	n, _, err := conn.Receive(reply)
	if err != nil {
		return fmt.Errorf("consumer reply: %w", err)
	}
	ok := string(reply[:n]) == fmt.Sprintf("sha256 %x", sum)
	say("producer: sent %-6s in one descriptor; consumer's checksum matches: %v (round trip %v)", human(size), ok, time.Since(start).Round(time.Microsecond))
	if !ok {
		return fmt.Errorf("consumer saw different bytes: %s", reply[:n])
	}
	return nil
}

func sendUnsealed(conn *sealbuf.Conn, say func(string, ...any)) error {
	f, err := memfd.Create("unsealed")
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("trust me"), 0); err != nil {
		return err
	}
	ro, err := f.ReopenReadOnly()
	if err != nil {
		return err
	}
	defer ro.Close()
	say("producer: sending memfd %q with seals %q as if it were sealed", f.Name(), sealsOf(f))
	if err := sendRaw(conn, "sealed", ro); err != nil {
		return err
	}
	reply := make([]byte, 1024)
	n, _, err := conn.Receive(reply)
	if err != nil {
		return err
	}
	say("producer: consumer answered: %s", reply[:n])
	return nil
}

func sealsOf(f *memfd.File) memfd.Seals {
	s, _ := f.Seals()
	return s
}

// sendRaw sends a memfd with no seal checks, as a careless or hostile peer
// would.
func sendRaw(conn *sealbuf.Conn, header string, f *memfd.File) error {
	var out *os.File
	err := f.Control(func(fd int) error {
		nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return err
		}
		out = os.NewFile(uintptr(nfd), f.Name())
		return nil
	})
	if err != nil {
		return err
	}
	defer out.Close()
	return conn.SendFiles([]byte(header), out)
}

func truncateUnderReader(conn *sealbuf.Conn, say func(string, ...any)) error {
	const size = 8 << 20
	f, err := memfd.Create("shared-unsealed")
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	say("producer: sharing an unsealed %s memfd; the consumer maps it with sealbuf.Map", human(size))
	if err := conn.Send([]byte("map")); err != nil { // the next descriptor is unsealed: map it
		return err
	}
	if err := sendRaw(conn, "fd", f); err != nil {
		return err
	}
	reply := make([]byte, 1024)
	if _, _, err := conn.Receive(reply); err != nil { // "reading"
		return err
	}
	say("producer: consumer is reading; truncating the memfd to 4 KiB under it")
	if err := f.Truncate(4096); err != nil {
		return err
	}
	if err := conn.Send([]byte("truncated")); err != nil {
		return err
	}
	n, _, err := conn.Receive(reply)
	if err != nil {
		return err
	}
	say("producer: consumer answered: %s", reply[:n])
	return nil
}

func human(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
