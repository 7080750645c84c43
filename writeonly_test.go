//go:build linux

package sealbuf_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
)

// TestWriteOnlyDescriptor: a peer may send a memfd opened O_WRONLY, which
// mmap refuses (EACCES). Open and Map must say so, and what to do, rather
// than "permission denied", and leave the descriptor with the caller.
func TestWriteOnlyDescriptor(t *testing.T) {
	f := newTestMemfd(t, 8192, memfd.SealImmutable)
	for name, open := range map[string]func(*os.File) error{
		"Open": func(wo *os.File) error { _, err := sealbuf.Open(wo); return err },
		"Map":  func(wo *os.File) error { _, err := sealbuf.Map(wo); return err },
	} {
		t.Run(name, func(t *testing.T) {
			wo := procOpen(t, f, os.O_WRONLY)
			closeLater(t, wo)
			err := open(wo)
			require.Error(t, err)
			require.ErrorContains(t, err, "write-only")
			require.ErrorContains(t, err, "O_RDONLY")
			_, err = wo.Stat()
			require.NoError(t, err, "the refused descriptor stays open")
		})
	}
}
