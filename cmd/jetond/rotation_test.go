package main

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestScheduledRotation(t *testing.T) {
	c := &clock{t: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}
	km, err := localkeys.New(true)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.New(tokenizer.Config{Classes: tokenizer.DefaultClasses(), Keys: km,
		Store: memstore.New(memstore.WithClock(c.now)), Now: c.now, KeyRefresh: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := tok.Tokenize(ctx, "acme", []tokenizer.Item{{Class: "name", Value: "Rotation Person"}}, ""); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	current := func() uint32 {
		gs, err := tok.Generations(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gs {
			if g.Current {
				return g.Generation
			}
		}
		t.Fatal("no current generation")
		return 0
	}
	const month = 30 * 24 * time.Hour
	tenants := []string{"acme", "never-used"}

	rotateDue(ctx, tok, tenants, month, log)
	if g := current(); g != 1 {
		t.Fatalf("a fresh generation was rotated: now %d", g)
	}
	c.add(month + time.Hour)
	rotateDue(ctx, tok, tenants, month, log)
	if g := current(); g != 2 {
		t.Fatalf("after a month: generation %d, want 2", g)
	}
	rotateDue(ctx, tok, tenants, month, log)
	if g := current(); g != 2 {
		t.Fatalf("a second pass rotated again: generation %d", g)
	}
	if _, err := tok.Generations(ctx, "never-used"); err == nil {
		t.Error("scheduled rotation created keys for a tenant that never tokenized")
	}
	if !bytes.Contains(logs.Bytes(), []byte("scheduled rotation: new generation")) {
		t.Error("the rotation was not logged")
	}
}

func TestStartRotationStops(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	r := rotatorFunc(func(context.Context, string, time.Duration) (bool, uint32, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		return false, 1, nil
	})
	stop := startRotation(r, func() []string { return []string{"acme"} }, time.Hour, time.Millisecond, slog.New(slog.DiscardHandler))
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := calls
		mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	n := calls
	mu.Unlock()
	if n < 3 {
		t.Fatalf("the loop ran %d times", n)
	}
	time.Sleep(20 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if calls != n {
		t.Error("the loop kept running after stop")
	}
	if off := startRotation(r, nil, 0, 0, nil); off() != nil {
		t.Error("disabled rotation")
	}
}

type rotatorFunc func(context.Context, string, time.Duration) (bool, uint32, error)

func (f rotatorFunc) RotateIfOlder(ctx context.Context, t string, d time.Duration) (bool, uint32, error) {
	return f(ctx, t, d)
}
