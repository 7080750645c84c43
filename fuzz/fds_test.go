//go:build linux

package fuzz

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
)

// fdSet is this process's open descriptors: number → what it points at.
type fdSet map[string]string

// openFDs lists /proc/self/fd (without the descriptor reading it takes).
func openFDs() fdSet {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	set := make(fdSet, len(ents))
	for _, e := range ents {
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			set[e.Name()] = link
		}
	}
	return set
}

// leakedSince describes the descriptors open now that were not open (or
// pointed elsewhere) at before, or returns "". Descriptors closed since
// are no leak: the fuzzing engine, or a finalizer from before the input,
// may close its own while an input runs (seen: 21 before, 12 after).
func leakedSince(before fdSet) string {
	var leaked []string
	for n, link := range openFDs() {
		if before[n] != link {
			leaked = append(leaked, fmt.Sprintf("%s -> %s", n, link))
		}
	}
	if len(leaked) == 0 {
		return ""
	}
	sort.Strings(leaked)
	return fmt.Sprintf("%d descriptors opened and left open: %s", len(leaked), strings.Join(leaked, ", "))
}

func TestLeakedSince(t *testing.T) {
	before := openFDs()
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	if leakedSince(before) == "" {
		t.Fatal("a descriptor left open is not reported")
	}
	f.Close()
	if leak := leakedSince(before); leak != "" {
		t.Fatalf("closed, still reported: %s", leak)
	}
	// Descriptors closed during the input are no leak.
	g, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	before = openFDs()
	g.Close()
	if leak := leakedSince(before); leak != "" {
		t.Fatalf("a descriptor closed meanwhile is reported: %s", leak)
	}
}
