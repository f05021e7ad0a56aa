package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/client"
)

func TestPing(t *testing.T) {
	env, stop := startExampleServer()
	defer stop()
	c, err := client.New(env.publicAddr, client.WithTLSFiles(env.caFile, env.sponsorCert, env.sponsorKey))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("Ping a serving server: %v", err)
	}
	stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("Ping a stopped server: %v, want ErrUnavailable", err)
	}
}
