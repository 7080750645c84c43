//go:build linux

// Package handoff measures how fast one process can hand a message of a
// given size to another: the producer is the calling process, the consumer
// a re-executed copy of the running binary, connected by a socket pair.
// The sealbuf command (bench) and the bench module share it.
//
// Every mode does the same work per message: the producer writes every
// payload byte (a pattern that depends on the message index, see Fill),
// hands the message over, and waits for an ack (one byte; in the pool modes
// the release of the slot); the consumer reads every byte, checks it (a
// wrong byte fails the run), releases the message and acks. One message in flight at a time (ping-pong), so ns/msg is the
// full cost of one handoff, both sides included.
//
// The binary must dispatch the consumer role: when the environment variable
// RoleEnv equals Role, call Child and exit with its status, before anything
// else (in main, or in TestMain before m.Run).
package handoff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// RoleEnv is the environment variable that makes a re-executed binary a
	// child; it is the sealbuf command's own child-role variable.
	RoleEnv = "SEALBUF_CHILD_ROLE"
	// Role is RoleEnv's value for a handoff consumer.
	Role = "handoff-consumer"

	envMode = "SEALBUF_HANDOFF_MODE"
	envSize = "SEALBUF_HANDOFF_SIZE"
	envCPU  = "SEALBUF_HANDOFF_CPU"
)

// Mode is one way to hand a message to another process.
type Mode struct {
	Name string
	// Socket is the type of the socket pair: unix.SOCK_STREAM or
	// unix.SOCK_SEQPACKET.
	Socket int
	// Supports reports why a size cannot be measured (nil: it can). It runs
	// in the producer before the consumer is started. Optional.
	Supports func(size int) error
	// Producer prepares to send size-byte messages over sock, its end of
	// the pair (blocking; it may convert it with net.FileConn).
	Producer func(sock *os.File, size int) (Producer, error)
	// Consume receives size-byte messages from sock until the producer hangs
	// up, checks every byte of message k (0, 1, 2…) with Check, and acks each
	// (with one byte, or by releasing the pool slot). It returns nil at end
	// of file.
	Consume func(sock *os.File, size int) error
	// FanOut, for a mode that can hand one message to several consumers,
	// prepares a producer that sends every message to each of socks (one
	// per consumer, each running Consume) and whose Send returns once all
	// of them have acked. Optional: without it the mode measures one
	// consumer only (Options.Consumers > 1 is refused).
	FanOut func(socks []*os.File, size int) (Producer, error)
}

// Producer sends messages of one mode and size.
type Producer interface {
	// Send builds message k (writing every byte), hands it over and waits
	// for the consumer's ack.
	Send(k uint64) error
	// Close releases what the producer holds (not the socket).
	Close() error
}

// Readier is implemented by producers that measure latency with the
// producer not saturated: Ready waits, untimed, until work the producer
// does in the background between messages has caught up, and the next
// Send is timed alone.
type Readier interface{ Ready() error }

// Idler is implemented by producers whose consumer busy-waits for the next
// message: Idle tells it that none will come for a while, so that it
// stops spinning (it may park: the next Send must wake it). Measure calls
// it when a session's turn ends (after the warm-up and after each round),
// so that a spinning consumer does not take the CPU from the modes
// measured in between.
type Idler interface{ Idle() error }

// Noter is implemented by producers that say how they built messages
// (for example which build path they chose).
type Noter interface{ Note() string }

var (
	regMu sync.Mutex
	modes = map[string]Mode{}
)

// Register adds a mode; the consumer process must register it too (do it
// from an init function).
func Register(m Mode) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := modes[m.Name]; dup {
		panic("handoff: mode " + m.Name + " registered twice")
	}
	modes[m.Name] = m
}

// Lookup returns the mode registered under name.
func Lookup(name string) (Mode, bool) {
	regMu.Lock()
	defer regMu.Unlock()
	m, ok := modes[name]
	return m, ok
}

// Names returns the registered modes' names, sorted.
func Names() []string {
	regMu.Lock()
	defer regMu.Unlock()
	names := make([]string, 0, len(modes))
	for n := range modes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Options configure a Session.
type Options struct {
	// CPU pins the consumers to this CPU (< 0: no pinning), unless
	// ConsumerCPUs is set. Pin the producer, this process, with
	// PinProcess; Measure pins it to CPU.
	CPU int
	// ConsumerCPUs, when not empty, pins consumer i to ConsumerCPUs[i %
	// len] instead of CPU: with the producer on CPU and the consumers
	// elsewhere, the handoff crosses CPUs (sealbuf bench -pin cross).
	ConsumerCPUs []int
	// Consumers is how many consumer processes each message goes to (0
	// and 1: one). Modes without FanOut refuse more than one.
	Consumers int
}

// consumerCPU returns the CPU consumer i is pinned to (< 0: none).
func (o Options) consumerCPU(i int) int {
	if len(o.ConsumerCPUs) > 0 {
		return o.ConsumerCPUs[i%len(o.ConsumerCPUs)]
	}
	return o.CPU
}

// Session is one producer (this process) connected to one consumer child,
// or to several for a fan-out (Options.Consumers).
type Session struct {
	mode   Mode
	size   int
	prod   Producer
	kids   []*consumer
	lat    Latency
	next   uint64
	closed bool
}

// consumer is one consumer child and the producer's end of its socket.
type consumer struct {
	sock   *os.File
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   bool // the child was waited for
}

// Start starts the consumer children (opt.Consumers, at least one) for mode
// and size and connects a producer to them. Every child has signalled it
// is ready when Start returns. Close the Session. On error there is
// nothing to close.
func Start(mode Mode, size int, opt Options) (s *Session, err error) {
	n := max(opt.Consumers, 1)
	if n > 1 && mode.FanOut == nil {
		return nil, fmt.Errorf("handoff: %s cannot hand one message to several consumers: it measures one only (-consumers 1)", mode.Name)
	}
	if mode.Supports != nil {
		if err := mode.Supports(size); err != nil {
			return nil, err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("handoff: find own binary to re-execute: %w", err)
	}
	s = &Session{mode: mode, size: size}
	defer func() {
		if err != nil {
			s.Close()
			s = nil
		}
	}()
	socks := make([]*os.File, n)
	for i := range n {
		k, err := startConsumer(exe, mode, size, opt.consumerCPU(i))
		if k != nil {
			s.kids = append(s.kids, k)
		}
		if err != nil {
			return s, err
		}
		socks[i] = k.sock
	}
	for i, k := range s.kids {
		var ready [1]byte
		if n, err := k.sock.Read(ready[:]); n != 1 {
			return s, s.childError(fmt.Errorf("consumer %d did not start: %v", i+1, err))
		}
	}
	var prod Producer
	if n > 1 {
		prod, err = mode.FanOut(socks, size)
	} else {
		prod, err = mode.Producer(socks[0], size)
	}
	if err != nil {
		return s, fmt.Errorf("handoff: %s producer: %w", mode.Name, err)
	}
	s.prod = prod
	return s, nil
}

// startConsumer starts one consumer child pinned to cpu (< 0: not
// pinned). It returns the child even on error, if it has one to close.
func startConsumer(exe string, mode Mode, size, cpu int) (*consumer, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, mode.Socket|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("handoff: %s: %w", mode.Name, os.NewSyscallError("socketpair", err))
	}
	mine := os.NewFile(uintptr(fds[0]), "handoff producer socket")
	theirs := os.NewFile(uintptr(fds[1]), "handoff consumer socket")
	defer theirs.Close() // the child has its own copy once started
	k := &consumer{sock: mine, stderr: new(bytes.Buffer)}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(),
		RoleEnv+"="+Role,
		envMode+"="+mode.Name,
		envSize+"="+strconv.Itoa(size),
		envCPU+"="+strconv.Itoa(cpu),
	)
	cmd.ExtraFiles = []*os.File{theirs} // fd 3 in the child
	cmd.Stdout = os.Stderr
	cmd.Stderr = k.stderr
	if err := cmd.Start(); err != nil {
		return k, fmt.Errorf("handoff: start consumer: %w", err)
	}
	k.cmd = cmd
	return k, nil
}

// Note returns the producer's note on how it builds messages, if any.
func (s *Session) Note() string {
	if n, ok := s.prod.(Noter); ok {
		return n.Note()
	}
	return ""
}

// Run hands n messages over (after each producer's Ready, if any).
func (s *Session) Run(n int) error {
	for range n {
		if err := s.Ready(); err != nil {
			return err
		}
		if err := s.send(); err != nil {
			return err
		}
	}
	return nil
}

// RunFor hands messages over until d has passed (at least one) or ctx is
// done, and returns how many and how long they took. For a Readier
// producer the time is the sum of the Sends alone, the Ready waits left
// out; d still bounds the wall time. Every message's round trip (its Send,
// from the fill to the last ack) is recorded in Latency.
func (s *Session) RunFor(ctx context.Context, d time.Duration) (int, time.Duration, error) {
	start := time.Now()
	n := 0
	var timed time.Duration
	for {
		if err := s.Ready(); err != nil {
			return n, timed, err
		}
		t0 := time.Now()
		if err := s.send(); err != nil {
			return n, timed + time.Since(t0), err
		}
		n++
		now := time.Now()
		rt := now.Sub(t0)
		s.lat.Record(rt)
		timed += rt
		if now.Sub(start) >= d {
			if !s.Paced() {
				timed = now.Sub(start)
			}
			return n, timed, nil
		}
		if err := ctx.Err(); err != nil {
			return n, timed, err
		}
	}
}

// Idle runs the producer's Idle (nothing for other producers).
func (s *Session) Idle() error {
	i, ok := s.prod.(Idler)
	if !ok {
		return nil
	}
	if err := i.Idle(); err != nil {
		return s.childError(fmt.Errorf("%s, idle: %w", s.mode.Name, err))
	}
	return nil
}

// Paced reports whether the producer is a Readier: its messages are timed
// one by one, each after an untimed Ready.
func (s *Session) Paced() bool {
	_, ok := s.prod.(Readier)
	return ok
}

// Ready runs the producer's untimed Ready (nothing for other producers).
func (s *Session) Ready() error {
	r, ok := s.prod.(Readier)
	if !ok {
		return nil
	}
	if err := r.Ready(); err != nil {
		return s.childError(fmt.Errorf("%s, ready for message %d: %w", s.mode.Name, s.next, err))
	}
	return nil
}

func (s *Session) send() error {
	k := s.next
	s.next++
	if err := s.prod.Send(k); err != nil {
		return s.childError(fmt.Errorf("%s, message %d of %d bytes: %w", s.mode.Name, k, s.size, err))
	}
	return nil
}

// Latency returns the round trips RunFor recorded (Reset it to start
// again, as Measure does after the warm-up).
func (s *Session) Latency() *Latency { return &s.lat }

// childError adds what the consumers said to err, once they have exited.
func (s *Session) childError(err error) error {
	for _, k := range s.kids {
		if k.cmd != nil && !k.done {
			k.sock.Close() // let a consumer still waiting see end of file
		}
	}
	for i, k := range s.kids {
		if k.cmd == nil || k.done {
			continue
		}
		who := "consumer"
		if len(s.kids) > 1 {
			who = fmt.Sprintf("consumer %d", i+1)
		}
		werr := k.wait()
		if msg := bytes.TrimSpace(k.stderr.Bytes()); len(msg) > 0 {
			err = fmt.Errorf("%w; %s: %s", err, who, msg)
		} else if werr != nil {
			err = fmt.Errorf("%w; %s: %v", err, who, werr)
		}
	}
	return err
}

func (k *consumer) wait() error {
	if k.done {
		return nil
	}
	k.done = true
	return k.cmd.Wait()
}

// Close hangs up and waits for the consumers. It reports a consumer that
// failed. Closing again does nothing.
func (s *Session) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.prod != nil {
		err = s.prod.Close()
	}
	for _, k := range s.kids {
		k.sock.Close()
	}
	for _, k := range s.kids {
		if k.cmd != nil && !k.done {
			if werr := k.wait(); werr != nil && err == nil {
				err = fmt.Errorf("handoff: %s consumer: %v: %s", s.mode.Name, werr, bytes.TrimSpace(k.stderr.Bytes()))
			}
		}
	}
	return err
}

// Result is one measurement.
type Result struct {
	Mode     string
	Size     int
	Msgs     int     // messages timed, all rounds
	NsPerMsg float64 // the median of the rounds' time per message
	// P50Ns and P99Ns are quantiles of the round trip of every timed
	// message (all rounds): from the producer's fill to the last ack.
	P50Ns, P99Ns float64
	Note         string // the producer's note (Noter)
	Err          error  // the mode could not be measured: the other fields are zero
}

// Measure measures modes at one size, interleaved so that a noisy machine
// (another process taking the CPU for a while) hurts every mode alike: it
// starts a session per mode, warms each for warm, then runs rounds rounds,
// each giving every session per/rounds in turn. A mode's time per message
// is the median over the rounds; its p50 and p99 are over every message
// of every round (the warm-up left out). With opt.CPU ≥ 0 this process is
// pinned to that CPU meanwhile (see PinProcess). A mode that fails gets a
// Result with Err; ctx's error ends the measurement.
func Measure(ctx context.Context, modes []Mode, size int, warm, per time.Duration, rounds int, opt Options) ([]Result, error) {
	rounds = max(rounds, 1)
	if opt.CPU >= 0 {
		unpin, err := PinProcess(opt.CPU)
		if err != nil {
			return nil, err
		}
		defer unpin()
	}
	results := make([]Result, len(modes))
	sessions := make([]*Session, len(modes))
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.Close()
			}
		}
	}()
	for i, m := range modes {
		results[i] = Result{Mode: m.Name, Size: size}
		s, err := Start(m, size, opt)
		if err == nil {
			_, _, err = s.RunFor(ctx, warm)
		}
		if err == nil {
			err = s.Idle()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			if s != nil {
				err = errors.Join(err, s.Close())
			}
			results[i].Err = err
			continue
		}
		sessions[i] = s
		s.lat.Reset()
		results[i].Note = s.Note()
	}
	perRound := make([][]float64, len(modes))
	for range rounds {
		runtime.GC()
		for i, s := range sessions {
			if s == nil {
				continue
			}
			n, el, err := s.RunFor(ctx, per/time.Duration(rounds))
			if err == nil {
				err = s.Idle()
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if err != nil {
				results[i] = Result{Mode: s.mode.Name, Size: size, Err: errors.Join(err, s.Close())}
				sessions[i] = nil
				continue
			}
			results[i].Msgs += n
			perRound[i] = append(perRound[i], float64(el.Nanoseconds())/float64(n))
		}
	}
	for i, s := range sessions {
		if s == nil {
			continue
		}
		sessions[i] = nil
		if err := s.Close(); err != nil {
			results[i] = Result{Mode: s.mode.Name, Size: size, Err: err}
			continue
		}
		results[i].NsPerMsg = median(perRound[i])
		results[i].P50Ns = s.lat.Quantile(0.50)
		results[i].P99Ns = s.lat.Quantile(0.99)
	}
	return results, nil
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// Child is the consumer process's entry point: it returns the exit status.
func Child() int {
	if err := child(); err != nil {
		fmt.Fprintf(os.Stderr, "%v\n", err)
		return 1
	}
	return 0
}

func child() error {
	name := os.Getenv(envMode)
	mode, ok := Lookup(name)
	if !ok {
		return fmt.Errorf("handoff consumer: unknown mode %q (known: %v)", name, Names())
	}
	size, err := strconv.Atoi(os.Getenv(envSize))
	if err != nil {
		return fmt.Errorf("handoff consumer: bad %s: %w", envSize, err)
	}
	if cpu, err := strconv.Atoi(os.Getenv(envCPU)); err == nil && cpu >= 0 {
		if _, err := pinProcess(cpu, false); err != nil {
			return err
		}
	}
	//iosafety:allow newfile fd 3 is the socket Start passed in ExtraFiles, adopted once at startup
	sock := os.NewFile(3, "handoff consumer socket")
	if sock == nil {
		return errors.New("handoff consumer: no socket on descriptor 3")
	}
	if _, err := sock.Write([]byte{'r'}); err != nil {
		return fmt.Errorf("handoff consumer: signal ready: %w", err)
	}
	if err := mode.Consume(sock, size); err != nil {
		return fmt.Errorf("handoff consumer (%s, %d bytes): %w", name, size, err)
	}
	return nil
}
