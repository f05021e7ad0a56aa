package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
)

// rotator is the part of the tokenizer scheduled rotation needs.
type rotator interface {
	RotateIfOlder(ctx context.Context, tenant string, maxAge time.Duration) (bool, uint32, error)
}

// rotateDue gives every tenant whose current generation is at least every
// old a new one. A tenant that has no keys yet is skipped: its first
// tokenization creates generation 1.
func rotateDue(ctx context.Context, r rotator, tenants []string, every time.Duration, log *slog.Logger) {
	for _, t := range tenants {
		rotated, gen, err := r.RotateIfOlder(ctx, t, every)
		switch {
		case errors.Is(err, tokenizer.ErrNotFound):
		case err != nil:
			log.Error("scheduled rotation failed; will retry", "tenant", t, "error", err)
		case rotated:
			log.Info("scheduled rotation: new generation", "tenant", t, "generation", gen)
		}
	}
}

// startRotation runs rotateDue every check until the returned stop is
// called. tenants is read at each pass, so a reloaded policy is followed.
func startRotation(r rotator, tenants func() []string, every, check time.Duration, log *slog.Logger) (stop func() error) {
	if every <= 0 {
		return func() error { return nil }
	}
	if check <= 0 {
		check = time.Hour
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(check)
		defer tick.Stop()
		for {
			rotateDue(ctx, r, tenants(), every, log)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() error { cancel(); <-done; return nil }
}
