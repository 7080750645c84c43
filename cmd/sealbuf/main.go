//go:build linux

// Command sealbuf shows and inspects sealed shared-memory buffers.
//
//	sealbuf demo                             a producer and a consumer process hand sealed buffers over zero-copy
//	sealbuf inspect [-json] [-all | PID...]  list the memfds that processes hold or map (like lsof, for memfds):
//	                                         without PIDs your own processes, with -all every user's
//	sealbuf bench [flags]                    compare handoff modes, the pool among them, with a socket copy
package main

import (
	"fmt"
	"io"
	"os"
)

// command is one subcommand; each registers itself from its own file's init.
type command struct {
	name, args, help string
	run              func(args []string, stdout, stderr io.Writer) error
}

var commands []command

func register(c command) { commands = append(commands, c) }

func main() {
	if role := os.Getenv(childRoleEnv); role != "" {
		os.Exit(runChild(role))
	}
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	for _, c := range commands {
		if c.name == os.Args[1] {
			if err := c.run(os.Args[2:], os.Stdout, os.Stderr); err != nil {
				fmt.Fprintf(os.Stderr, "sealbuf %s: %v\n", c.name, err)
				os.Exit(1)
			}
			return
		}
	}
	usage(os.Stderr)
	os.Exit(2)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: sealbuf <command> [arguments]")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-26s %s\n", c.name+" "+c.args, c.help)
	}
}

// childRoleEnv names the role a re-executed sealbuf plays (consumer, hostile
// peer…); child processes are this same binary.
const childRoleEnv = "SEALBUF_CHILD_ROLE"

// children maps roles to their entry points; each returns the exit status.
var children = map[string]func() int{}

func runChild(role string) int {
	fn, ok := children[role]
	if !ok {
		fmt.Fprintf(os.Stderr, "sealbuf: unknown child role %q\n", role)
		return 2
	}
	return fn()
}
