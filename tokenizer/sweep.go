package tokenizer

import (
	"context"

	"golang.org/x/time/rate"
)

// Defaults of SweepOptions.
const (
	DefaultSweepBatch = 500
	DefaultSweepRate  = 5000 // records examined per second
)

// SweepOptions bounds a sweep, so that it never crowds out the traffic of
// the store it shares.
type SweepOptions struct {
	// Batch is how many records are read, then deleted, per round trip;
	// DefaultSweepBatch if zero.
	Batch int
	// Rate bounds the records examined per second; DefaultSweepRate if
	// zero.
	Rate float64
}

// SweepProgress counts a sweep's work so far.
type SweepProgress struct {
	// Scanned records were examined; Deleted of them belonged to a
	// destroyed generation and are gone.
	Scanned, Deleted int64
	// Pending lists destroyed generations whose records were left
	// because their KEK still exists (a destroy that stopped half way):
	// run DestroyGeneration again, then sweep again.
	Pending []uint32
}

// SweepDestroyed deletes the records of tenant's destroyed generations.
// Destroying a generation makes its records unreadable at once; this
// removes the dead ciphertext, so that it neither lingers until its
// retention ends nor counts in Stats.
//
// A generation is swept only when the KeyManager no longer has its KEK
// and the store marks it destroyed (or holds a wrapped key of it that only
// that KEK opened): neither a store that claims a live generation is
// destroyed, nor a destroy cut short, makes it delete records that could
// still open, and a store that hides a destroy (a restored backup) does
// not keep dead records. Each record's generation is read from its
// envelope's clear header, without opening it; records whose header does
// not parse are left alone.
//
// It is bounded (opts), resumable (run it again: what is gone stays gone)
// and safe to run on several replicas at once (deletes are idempotent, and
// a record's name belongs to one generation for good: random tokens never
// repeat, and a deterministic token is a MAC under its own generation's
// key). progress, if not nil, is called after each batch.
func (t *Tokenizer) SweepDestroyed(ctx context.Context, tenant string, opts SweepOptions, progress func(SweepProgress)) (SweepProgress, error) {
	var p SweepProgress
	if err := validateName("tenant", tenant); err != nil {
		return p, &UserError{err}
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultSweepBatch
	}
	if opts.Rate <= 0 {
		opts.Rate = DefaultSweepRate
	}
	doomed, pending, err := t.sweepable(ctx, tenant)
	if err != nil || len(doomed) == 0 {
		p.Pending = pending
		return p, err
	}
	p.Pending = pending
	lim := rate.NewLimiter(rate.Limit(opts.Rate), opts.Batch)
	err = t.store.Scan(ctx, recordPrefix(tenant), func(keys []string) error {
		for len(keys) > 0 {
			chunk := keys[:min(opts.Batch, len(keys))]
			keys = keys[len(chunk):]
			if err := lim.WaitN(ctx, len(chunk)); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				// The wait would outlast ctx's deadline: stop now, as
				// the deadline would.
				return context.DeadlineExceeded
			}
			blobs, err := t.store.Get(ctx, chunk)
			if err != nil {
				return err
			}
			var dead []string
			for i, b := range blobs {
				if b == nil {
					continue // expired or erased meanwhile
				}
				p.Scanned++
				if gen, ok := generationOf(b); ok && doomed[gen] {
					dead = append(dead, chunk[i])
				}
			}
			if len(dead) > 0 {
				n, err := t.store.Delete(ctx, dead)
				if err != nil {
					return err
				}
				p.Deleted += int64(n)
			}
			if progress != nil {
				progress(p)
			}
		}
		return nil
	})
	if err != nil {
		return p, unavailable("store", err)
	}
	return p, nil
}

// sweepable returns the generations of tenant whose records may be swept,
// and those marked destroyed whose KEK still exists. A generation may be
// swept once its KEK is gone from the KeyManager and either the store
// marks it destroyed or its stored wrapped key is one that a KEK of its
// own wrapped: then nothing can ever open its records, whatever else the
// store says (a restored backup brings back the wrapped key, never the
// KEK).
func (t *Tokenizer) sweepable(ctx context.Context, tenant string) (doomed map[uint32]bool, pending []uint32, err error) {
	cur, ok, err := t.keys.readCurrent(ctx, tenant)
	if err != nil || !ok {
		return nil, nil, err
	}
	names := make([]string, 0, 2*cur)
	for g := uint32(1); g <= cur; g++ {
		names = append(names, destroyedName(tenant, g), genName(tenant, g))
	}
	vals, err := t.store.Get(ctx, names)
	if err != nil {
		return nil, nil, unavailable("store", err)
	}
	live, err := t.keys.liveKEKs(ctx, tenant)
	if err != nil {
		return nil, nil, err
	}
	doomed = map[uint32]bool{}
	for g := uint32(1); g <= cur; g++ {
		marker, blob := vals[2*(g-1)], vals[2*(g-1)+1]
		ownKEK := false
		if blob != nil {
			kb, err := parseKeyBlob(blob)
			ownKEK = err == nil && kb.version != keyBlobVersion1
		}
		switch {
		case live[g]:
			if marker != nil {
				pending = append(pending, g)
			}
		case marker != nil, ownKEK:
			doomed[g] = true
		}
	}
	return doomed, pending, nil
}

// generationOf reads the key generation from a stored record's clear
// header, without opening it.
func generationOf(blob []byte) (uint32, bool) {
	h, err := parseEnvelopeHeader(blob)
	if err != nil {
		return 0, false
	}
	return h.gen, true
}
