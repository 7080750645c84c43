//go:build linux

// Package testutil holds what sealbuf's own tests share across packages,
// so that each test file does not grow a family of its own:
//
//   - build facts: Race;
//   - socket pairs, as *os.File (Socketpair) or *net.UnixConn (UnixPair),
//     closed when the test ends, and the socket types to run over
//     (SockTypes, EachSockType);
//   - descriptor and mapping counts from /proc/self (Count, Snap,
//     RequireFlat, RequireDelta, CountFDs, CountMaps, CountMemfdMaps,
//     MapsLine, MemfdByName), with
//     the garbage collector held off (NoGC) so that no finalizer closes
//     what the code under test forgot, and SettleFinalizers for the
//     opposite;
//   - probes that tell when another goroutine is blocked, in place of a
//     sleep (Blocked, WaitBlocked, AwaitBlocked, InSyscall), and the
//     process's CPU time (ProcessCPU);
//   - kernel features a test needs: RequirePidfds, PassPidfds;
//   - child processes: the test binary run again in a role registered with
//     Role, which TestMain hands over to through Main or RunRole, started
//     with StartChild (or Command and Start), its stdout and stderr kept in
//     files, and killed and reaped when the test ends.
//
// It is imported by test files only.
package testutil
