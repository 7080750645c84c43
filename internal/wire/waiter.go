//go:build linux

package wire

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"
)

// waiter makes blocked reads (or writes) of a Conn obey a context without
// allocating: the call parks in the runtime poller and is interrupted by
// moving the socket's deadline into the past. A context's deadline, when
// earlier than the one set through the Conn, becomes the socket's deadline
// for the call; its cancellation is watched by one helper goroutine,
// started on first need and stopped by stop. When the call ends the
// deadline set through the Conn is put back. Only one call blocks at a
// time (the caller holds the Conn's RecvMu or SendMu).
//
// Every change of the socket's deadline goes through the waiter, under its
// mu: the Conn's SetReadDeadline (setOwn) cannot undo a kick or a
// context's deadline in force, nor be undone by end.
type waiter struct {
	set func(time.Time) error // the socket's SetReadDeadline or SetWriteDeadline

	mu      sync.Mutex
	own     time.Time // the deadline set through the Conn
	ctxDL   time.Time // the blocked call's context's deadline, when the socket has it (else zero)
	blocked bool      // a call is between begin and end
	kicked  bool      // and its deadline was moved into the past
	pending bool      // a kick came while no call was blocked: the next begin returns ErrKicked

	started bool
	stopped bool
	watch   chan context.Context
	unwatch chan struct{}
	quit    chan struct{}
	exited  chan struct{}
}

var longAgo = time.Unix(1, 0)

func (w *waiter) init(set func(time.Time) error) {
	w.set = set
}

// setOwn sets the deadline of the Conn's calls: the socket's at once,
// unless a blocked call moved the socket's (a kick, or its context's
// earlier deadline), in which case end puts this one in place.
func (w *waiter) setOwn(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.own = t
	if w.kicked {
		return nil
	}
	if !w.ctxDL.IsZero() {
		if t.IsZero() || w.ctxDL.Before(t) {
			return nil // the context's deadline comes first
		}
		w.ctxDL = time.Time{} // this one does: in force from now
	}
	return w.set(t)
}

// token records what begin set up, for end to undo.
type token struct {
	deadline bool // the socket's deadline was set from the context
	watched  bool // the helper watches the context
}

// begin prepares a blocking call under ctx.
func (w *waiter) begin(ctx context.Context) (token, error) {
	var tok token
	if err := ctx.Err(); err != nil {
		return tok, err
	}
	w.mu.Lock()
	if w.pending {
		w.pending = false
		w.mu.Unlock()
		return tok, ErrKicked
	}
	w.blocked = true
	if dl, ok := ctx.Deadline(); ok && (w.own.IsZero() || dl.Before(w.own)) {
		w.set(dl)
		w.ctxDL = dl
		tok.deadline = true
	}
	tok.watched = ctx.Done() != nil && w.startLocked()
	w.mu.Unlock()
	if tok.watched {
		w.watch <- ctx
	}
	return tok, nil
}

// end finishes a blocking call that returned err, and translates an
// interruption into the context's error or ErrKicked.
func (w *waiter) end(ctx context.Context, tok token, err error) error {
	if tok.watched {
		w.unwatch <- struct{}{}
	}
	w.mu.Lock()
	w.blocked = false
	kicked := w.kicked
	w.kicked = false
	if kicked || tok.deadline {
		w.set(w.own)
	}
	w.ctxDL = time.Time{}
	own := w.own
	w.mu.Unlock()
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	if kicked && (own.IsZero() || time.Now().Before(own)) {
		return ErrKicked
	}
	return err
}

// kick interrupts the blocked call, or, when none is blocked, the next
// one before it blocks.
func (w *waiter) kick() {
	w.mu.Lock()
	switch {
	case !w.blocked:
		w.pending = true
	case !w.kicked:
		w.kicked = true
		w.set(longAgo)
	}
	w.mu.Unlock()
}

// startLocked starts the helper goroutine once; false once stopped.
func (w *waiter) startLocked() bool {
	if w.stopped {
		return false
	}
	if w.started {
		return true
	}
	w.started = true
	w.watch = make(chan context.Context)
	w.unwatch = make(chan struct{})
	w.quit = make(chan struct{})
	w.exited = make(chan struct{})
	go w.run()
	return true
}

func (w *waiter) run() {
	defer close(w.exited)
	for {
		select {
		case ctx := <-w.watch:
			select {
			case <-ctx.Done():
				w.kick()
				<-w.unwatch
			case <-w.unwatch:
			}
		case <-w.quit:
			return
		}
	}
}

// stop ends the helper goroutine; no call may be blocked.
func (w *waiter) stop() {
	w.mu.Lock()
	started, quit, exited := w.started, w.quit, w.exited
	w.stopped = true
	w.mu.Unlock()
	if started {
		close(quit)
		<-exited
	}
}
