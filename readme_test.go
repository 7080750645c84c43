//go:build linux

package sealbuf_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
)

// The snippets of README.md's "Producer and consumer" section, as code that
// runs. TestReadmeSnippets checks that every snippet there appears here
// verbatim (up to indentation and spacing), TestReadmePair and
// TestReadmeListen run them.

// readmeProducer is the README's producer: the code between its braces is
// the first snippet.
func readmeProducer(cmd *exec.Cmd, frame []byte) error {
	// Producer: start the consumer with one end of a socket pair, then fill, seal, send.
	conn, theirs, err := sealbuf.Pair()
	if err != nil {
		return err
	}
	defer conn.Close()
	cmd.ExtraFiles = []*os.File{theirs} // cmd: the consumer's *exec.Cmd; theirs becomes its descriptor 3
	err = cmd.Start()
	theirs.Close() // the consumer holds its own copy now
	if err != nil {
		return err
	}

	buf, err := sealbuf.New(len(frame))
	if err != nil {
		return err
	}
	copy(buf.Bytes(), frame)
	sealed, err := buf.Seal() // unmaps the writable view, adds shrink|grow|write|seal: nobody can change it now
	if err != nil {
		buf.Close()
		return err
	}
	if err := conn.SendAndClose([]byte("frame 42"), sealed); err != nil {
		return err
	}
	conn.Close() // the consumer reads io.EOF and exits
	return cmd.Wait()
}

// readmeConsumer is the README's consumer, the second snippet.
func readmeConsumer() error {
	// Consumer: adopt descriptor 3, then receive, verify, read in place. No copy, no guard needed.
	f, err := sealbuf.ExtraFile(0) // the parent's cmd.ExtraFiles[0], checked: an inherited UNIX socket
	if err != nil {
		return err
	}
	conn, err := sealbuf.FileConn(f, sealbuf.WithReceivePolicy(sealbuf.MaxSize(256<<20)))
	if err != nil {
		f.Close() // still yours on error
		return err
	}
	defer conn.Close()
	header := make([]byte, 512)
	for {
		n, bufs, err := conn.Receive(header) // each descriptor: a memfd sealed shrink|grow|write, or refused
		if errors.Is(err, io.EOF) {
			return nil // the producer hung up
		}
		if err != nil {
			return err
		}
		for _, b := range bufs {
			process(header[:n], b.Bytes()) // a read-only mapping of the producer's pages
			b.Close()
		}
	}
}

// readmeListen is the README's listening consumer, the third snippet.
func readmeListen(ctx context.Context, path string, serve func(*sealbuf.Conn)) error {
	l, err := sealbuf.Listen(path) // replaces a stale socket file; refuses a live listener
	if err != nil {
		return err
	}
	defer l.Close()                              // removes the socket file
	context.AfterFunc(ctx, func() { l.Close() }) // ctx done: Accept fails with net.ErrClosed
	for {
		conn, err := l.Accept()
		if err != nil {
			return err
		}
		go serve(conn) // receives as above, then closes conn
	}
}

// readmeDial is the README's dialing producer, the fourth snippet, followed
// by a send.
func readmeDial(path string, frame []byte) error {
	conn, err := sealbuf.Dial(path) // fails at once if nothing listens there
	if err != nil {
		return err
	}
	defer conn.Close()

	sealed, err := sealbuf.FromBytes(frame)
	if err != nil {
		return err
	}
	return conn.SendAndClose([]byte("frame 43"), sealed)
}

// process is what the README's consumer does with each buffer; in the
// child process of TestReadmePair it prints a line for the parent to check.
var process = func(header, data []byte) {
	fmt.Printf("%s: %d bytes, starting %q\n", header, len(data), data[:min(len(data), 8)])
}

// readme-consumer: the README's consumer, in a child.
var _ = testutil.Role("readme-consumer", func(string) int {
	if err := readmeConsumer(); err != nil {
		return testutil.ChildFail(err)
	}
	return 0
})

func TestReadmePair(t *testing.T) {
	testutil.NoGC(t)
	before := testutil.Snap(t)
	cmd := testutil.Command("readme-consumer", "")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	frame := bytes.Repeat([]byte("sealbuf!"), 1<<17) // 1 MiB
	require.NoError(t, readmeProducer(cmd, frame), "consumer's stderr: %s", &stderr)
	require.Equal(t, "frame 42: 1048576 bytes, starting \"sealbuf!\"\n", stdout.String())
	listenRequireFDs(t, before)
}

func TestReadmeListen(t *testing.T) {
	testutil.NoGC(t)
	before := testutil.Snap(t)
	path := listenPath(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	var got []string
	var served sync.WaitGroup
	served.Add(2)
	serve := func(conn *sealbuf.Conn) {
		defer served.Done()
		defer conn.Close()
		header := make([]byte, 64)
		for {
			n, bufs, err := conn.Receive(header)
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Error(err)
				}
				return
			}
			mu.Lock()
			for _, b := range bufs {
				got = append(got, fmt.Sprintf("%s: %s", header[:n], b.Bytes()))
				b.Close()
			}
			mu.Unlock()
		}
	}
	listened := make(chan error, 1)
	go func() { listened <- readmeListen(ctx, path, serve) }()
	// Until readmeListen listens, Dial fails: ENOENT before the bind,
	// ECONNREFUSED between the bind and the listen.
	require.Eventually(t, func() bool {
		err := readmeDial(path, []byte("first"))
		if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			require.NoError(t, err)
		}
		return err == nil
	}, 30*time.Second, time.Millisecond, "the listener never accepted a Dial")
	require.NoError(t, readmeDial(path, []byte("second")))
	served.Wait()
	cancel()
	err := <-listened
	require.ErrorIs(t, err, net.ErrClosed)
	_, err = os.Lstat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "the socket file is removed")
	require.ElementsMatch(t, []string{"frame 43: first", "frame 43: second"}, got)
	listenRequireFDs(t, before)
}

// TestReadmeSnippets checks that each Go snippet of README.md's "Producer
// and consumer" section (up to its first subsection) is code of this file,
// so that the README shows code that compiles and runs (TestReadmePair,
// TestReadmeListen).
func TestReadmeSnippets(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	section := regexp.MustCompile(`(?s)\n## Producer and consumer\n(.*?)\n##`).FindSubmatch(readme)
	require.NotNil(t, section, "README.md has no \"## Producer and consumer\" section")
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllSubmatch(section[1], -1)
	require.Len(t, blocks, 4, "the section's Go snippets: producer, consumer, listen, dial")
	self, err := os.ReadFile("readme_test.go")
	require.NoError(t, err)
	code := readmeNormalize(string(self))
	for _, b := range blocks {
		snippet := readmeNormalize(string(b[1]))
		require.True(t, strings.Contains(code, snippet), "README.md snippet not found in readme_test.go (update both together):\n%s", b[1])
	}
}

// readmeNormalize drops indentation, blank lines and runs of spaces, which
// differ between the README (spaces) and gofmt (tabs, aligned comments).
func readmeNormalize(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			out = append(out, strings.Join(f, " "))
		}
	}
	return "\n" + strings.Join(out, "\n") + "\n"
}
