package main

import (
	"bytes"
	"net"
	"os"
	"testing"
)

// TestBindProcess is not a test: run by TestHeldPortFailsABindingTest, it
// binds $HOLDPORTS_TEST_ADDR as a careless test would.
func TestBindProcess(t *testing.T) {
	addr := os.Getenv("HOLDPORTS_TEST_ADDR")
	if addr == "" {
		t.Skip("run by TestHeldPortFailsABindingTest")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

// freePort returns a loopback address that was free a moment ago: the
// check is tried on it, never on the ports `make run` uses.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestHeldPortFailsABindingTest: a command that binds a held port fails,
// on that address and on the wildcard one; one that binds another
// succeeds, and its status is passed on.
func TestHeldPortFailsABindingTest(t *testing.T) {
	held, other := freePort(t), freePort(t)
	_, port, _ := net.SplitHostPort(held)
	for _, tt := range []struct {
		name, bind string
		want       int
	}{
		{"the held address", held, 1},
		{"the wildcard address of the held port", ":" + port, 1},
		{"another port", other, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("HOLDPORTS_TEST_ADDR", tt.bind)
			var stderr bytes.Buffer
			got := run([]string{held}, []string{os.Args[0], "-test.run=^TestBindProcess$"}, &stderr)
			if got != tt.want {
				t.Fatalf("exit status %d, want %d; stderr:\n%s", got, tt.want, stderr.String())
			}
		})
	}
	if got := run([]string{held}, nil, &bytes.Buffer{}); got != 2 {
		t.Fatalf("no command: status %d, want 2", got)
	}
}
