//go:build linux

package pool_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/pool"
)

// TestPoolHostilePidfd (finding 6): with SO_PASSPIDFD on both sockets,
// every pool message and release arrives with a pidfd the kernel installs
// in the receiver. Accept (the hello), Receive (messages) and the
// producer's reads of releases close each: the descriptor count stays
// flat over many messages, and the messages still work.
//
// On 49a691d, scm.ParseRights knew SCM_RIGHTS only: an SCM_PIDFD was an
// "unexpected control message" (AcceptPool failed: ErrMalformed), and the
// pool's closeAttached, which parsed the same way, reported every message
// and release as carrying descriptors (ErrPoolProtocol) — and neither
// closed the pidfd: one descriptor leaked per message.
func TestPoolHostilePidfd(t *testing.T) {
	testutil.RequirePidfds(t)
	testutil.NoGC(t) // no finalizer closes what leaked
	for _, st := range poolFlavors {
		t.Run(st.Name, func(t *testing.T) {
			const slots, count = 2, 300
			a, b := testutil.UnixPair(t, st.Type&^poolFutex)
			testutil.PassPidfds(t, a) // the producer reads releases
			testutil.PassPidfds(t, b) // the consumer reads the hello and messages
			fds := testutil.CountFDs(t)
			p, err := pool.New(sealbuf.NewConn(a), slots, 4096, poolOpts(st.Type, pool.WithMaxHeader(16))...)
			require.NoError(t, err)
			defer p.Close()
			r, err := pool.Accept(sealbuf.NewConn(b))
			require.NoError(t, err)
			defer r.Close()
			require.Equal(t, fds+2, testutil.CountFDs(t), "Accept keeps the pool's memfd (and the producer its own), nothing else")
			fds = testutil.CountFDs(t)

			ctx := context.Background()
			hdr := make([]byte, 16)
			for i := range count {
				s, err := p.Acquire(ctx)
				require.NoError(t, err, "message %d", i)
				n := copy(s.Bytes(), fmt.Sprint("message ", i))
				require.NoError(t, s.Send(n, fmt.Append(nil, i)))
				v, hn, err := r.Receive(ctx, hdr)
				require.NoError(t, err, "message %d", i)
				require.Equal(t, fmt.Sprint(i), string(hdr[:hn]))
				require.Equal(t, fmt.Sprint("message ", i), string(v.Bytes()))
				require.NoError(t, v.Release())
			}
			for range slots { // every release is read
				s, err := p.Acquire(ctx)
				require.NoError(t, err)
				require.NoError(t, s.Discard())
			}
			require.Equal(t, fds, testutil.CountFDs(t), "pidfds leaked")
		})
	}
}
