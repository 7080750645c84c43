//go:build linux

package sealtest

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// CountFDs returns the number of descriptors open in this process: the
// entries of /proc/self/fd, less the one that reading it takes. It returns
// -1 when /proc cannot be read.
func CountFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - 1
}

// CountMaps returns the number of memfd mappings in this process: the lines
// of /proc/self/maps for a file named "/memfd:…", which are the only
// mappings sealbuf makes that outlive a call. Anonymous mappings are not
// counted: the Go runtime adds them as its heap grows. It returns -1 when
// /proc cannot be read.
func CountMaps() int {
	lines, err := memfdMaps()
	if err != nil {
		return -1
	}
	return len(lines)
}

func memfdMaps() ([]string, error) {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	var lines []string
	for line := range bytes.Lines(b) {
		if bytes.Contains(line, []byte(" /memfd:")) {
			lines = append(lines, string(bytes.TrimSpace(line)))
		}
	}
	return lines, nil
}

// Baseline records the descriptors and memfd mappings open at one moment,
// to compare with later.
type Baseline struct {
	fds  map[string]string // number → what it is
	maps []string
}

// NewBaseline records the descriptors and memfd mappings open now. It first
// initialises what the runtime opens lazily (the poller's descriptors) and
// runs the garbage collector and pending finalizers, so that neither counts
// as a leak or hides one later.
func NewBaseline() (*Baseline, error) {
	warmUp()
	settle()
	return snapshot()
}

func snapshot() (*Baseline, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	b := &Baseline{fds: make(map[string]string, len(ents))}
	for _, e := range ents {
		link, _ := os.Readlink("/proc/self/fd/" + e.Name())
		b.fds[e.Name()] = link
	}
	b.maps, err = memfdMaps()
	return b, err
}

// FDs returns the number of descriptors open at the baseline (as CountFDs).
func (b *Baseline) FDs() int { return len(b.fds) - 1 }

// Maps returns the number of memfd mappings at the baseline (as CountMaps).
func (b *Baseline) Maps() int { return len(b.maps) }

// Check compares the descriptors and memfd mappings open now with the
// baseline and returns an error listing the differences when their numbers
// differ (descriptors closed and opened again under other numbers are no
// leak), or nil.
func (b *Baseline) Check() error {
	now, err := snapshot()
	if err != nil {
		return err
	}
	var msg []string
	if len(now.fds) != len(b.fds) {
		msg = append(msg, fmt.Sprintf("%d descriptors open, %d at the baseline", now.FDs(), b.FDs()))
		msg = append(msg, diff("new or changed descriptor", now.fds, b.fds)...)
		msg = append(msg, diff("closed descriptor", b.fds, now.fds)...)
	}
	if len(now.maps) != len(b.maps) {
		msg = append(msg, fmt.Sprintf("%d memfd mappings, %d at the baseline", len(now.maps), len(b.maps)))
		for _, l := range now.maps {
			if !slices.Contains(b.maps, l) {
				msg = append(msg, "new mapping: "+l)
			}
		}
	}
	if len(msg) == 0 {
		return nil
	}
	return fmt.Errorf("sealtest: leak: %s", strings.Join(msg, "\n\t"))
}

func diff(what string, a, b map[string]string) []string {
	var out []string
	for n, link := range a {
		if b[n] != link {
			out = append(out, fmt.Sprintf("%s %s -> %s", what, n, link))
		}
	}
	slices.SortFunc(out, func(x, y string) int { return strings.Compare(x, y) })
	return out
}

// CheckLeaks records the descriptors and memfd mappings open now and
// checks that the same numbers are open at the end: it fails t, listing
// what changed, if not. From now until the check the garbage collector is
// off, so no finalizer can close a forgotten descriptor and hide the leak.
//
// The check runs when the returned function is called, or else when t's
// test ends, after every cleanup registered later (closing peers, sockets
// and files made by File, Start and the like). So call CheckLeaks first,
// either as
//
//	sealtest.CheckLeaks(t)
//
// to check after all cleanups, or as
//
//	defer sealtest.CheckLeaks(t)()
//
// to check when the test function returns, before its cleanups. Descriptor
// counts are per process: do not use it in parallel tests.
func CheckLeaks(t testing.TB) func() {
	t.Helper()
	base, err := NewBaseline()
	if err != nil {
		t.Fatalf("sealtest: leak check: %v", err)
	}
	gc := debug.SetGCPercent(-1)
	var once sync.Once
	check := func() {
		once.Do(func() {
			defer debug.SetGCPercent(gc)
			if err := base.Check(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(check)
	return check
}

var warmUp = sync.OnceFunc(func() {
	// A pipe is pollable: opening one starts the runtime's poller, whose
	// descriptors then stay open for good.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
})

// settle runs the garbage collector and waits until the finalizers it
// queued have run.
func settle() {
	for range 2 {
		done := make(chan struct{})
		dropSentinel(done)
		runtime.GC()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
}

// dropSentinel allocates an object whose finalizer closes done, and drops it.
func dropSentinel(done chan struct{}) {
	runtime.SetFinalizer(new([16]byte), func(*[16]byte) { close(done) })
}
