//go:build linux

// Command producer is the Go half of python/README.md's example: it
// listens on a unixpacket socket and sends the consumer that connects a
// 1024×1024 matrix of float64 (8 MiB) in one sealed buffer, with its dtype
// and shape as a JSON header; then it prints the consumer's reply.
//
//	go run ./python/examples/producer /tmp/sealbuf-demo.sock
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log"
	"math"
	"net"
	"os"

	"github.com/sealbuf/sealbuf"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: producer SOCKET-PATH")
	}
	if err := run(os.Args[1]); err != nil {
		log.Fatal(err)
	}
}

func run(path string) error {
	const rows, cols = 1024, 1024
	buf, err := sealbuf.New(rows*cols*8, sealbuf.WithName("matrix"))
	if err != nil {
		return err
	}
	b := buf.Bytes() // writable until Seal
	for i := range rows * cols {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(float64(i)))
	}
	matrix, err := buf.Seal() // immutable from here on, for everybody
	if err != nil {
		buf.Close()
		return err
	}
	defer matrix.Close()
	header, err := json.Marshal(map[string]any{"dtype": "<f8", "shape": []int{rows, cols}})
	if err != nil {
		return err
	}

	os.Remove(path) // a socket file left by an earlier run
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println("listening on", path)
	uc, err := ln.AcceptUnix()
	if err != nil {
		return err
	}
	conn := sealbuf.NewConn(uc)
	defer conn.Close()
	if err := conn.Send(header, matrix); err != nil {
		return err
	}
	reply := make([]byte, 256)
	n, _, err := conn.Receive(reply)
	if err != nil {
		return err
	}
	fmt.Printf("consumer: %s\n", reply[:n])
	return nil
}
