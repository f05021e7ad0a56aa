// Command holdports runs a command while it holds the loopback ports that
// `make run` uses (7443, 7444, 9464), so that any test binding one of them
// fails with "address already in use", as it would while `make run` is up.
// Tests must bind free ports only (port 0). When a port is taken already
// (by `make run`, say), the check holds all the same.
//
//	go run ./internal/holdports -- go test ./...
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// defaultPorts are the addresses `make run` binds.
const defaultPorts = "127.0.0.1:7443,127.0.0.1:7444,127.0.0.1:9464"

func main() {
	fs := flag.NewFlagSet("holdports", flag.ExitOnError)
	ports := fs.String("ports", defaultPorts, "comma-separated addresses to hold")
	fs.Parse(os.Args[1:])
	os.Exit(run(strings.Split(*ports, ","), fs.Args(), os.Stderr))
}

// run holds addrs while it runs argv, and returns its exit status.
func run(addrs, argv []string, stderr io.Writer) int {
	if len(argv) == 0 {
		fmt.Fprintln(stderr, "holdports: no command to run")
		return 2
	}
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		switch {
		case err == nil:
			defer l.Close()
		case errors.Is(err, syscall.EADDRINUSE):
			fmt.Fprintf(stderr, "holdports: %s is taken already (make run?): a test binding it fails all the same\n", a)
		default:
			fmt.Fprintf(stderr, "holdports: %v\n", err)
			return 2
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		fmt.Fprintf(stderr, "holdports: %s held during the run; a test that binds one of them fails (tests must use port 0)\n", strings.Join(addrs, ", "))
		return ee.ExitCode()
	default:
		fmt.Fprintf(stderr, "holdports: %v\n", err)
		return 2
	}
}
