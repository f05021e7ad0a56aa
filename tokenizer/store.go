package tokenizer

import (
	"context"
	"time"
)

// Entry is one key and value to store.
type Entry struct {
	Key   string
	Value []byte
	// TTL is the entry's lifetime; zero keeps it until deleted.
	TTL time.Duration
}

// SetAdd adds members to the set at Key, as Store.AddToSet does: a
// positive TTL extends the set's lifetime to at least TTL, zero makes it
// permanent.
type SetAdd struct {
	Key     string
	Members []string
	TTL     time.Duration
}

// Write is one batch of a Tokenize's writes: its records and its
// subject-index additions, which Store.Write sends together.
type Write struct {
	// Create holds entries stored only where their key is absent: a key
	// that holds a value keeps it, and keeps its lifetime. The first
	// record written under a name wins.
	Create []Entry
	// Keep holds entries stored as Create's are, except that a key that
	// holds a value, while keeping it, has its lifetime extended to at
	// least the entry's TTL (zero: made permanent). A lifetime never
	// shortens.
	Keep []Entry
	// Sets holds additions to sets.
	Sets []SetAdd
}

// Store is the key/value storage that holds records, wrapped keys and
// indexes. It only ever sees ciphertext and keyed hashes. Implementations
// send each batch in one round trip where they can; a batch is not atomic.
// Any error means the store could not be reached or could not do the work.
type Store interface {
	// Put stores every entry, replacing what was there.
	Put(ctx context.Context, entries []Entry) error
	// PutNew stores each entry only if its key is absent and reports, per
	// entry, whether it was stored.
	PutNew(ctx context.Context, entries []Entry) ([]bool, error)
	// PutExisting replaces the value (and TTL, as Put does) of each entry
	// whose key is present and reports, per entry, whether it was stored.
	// It lets a read-modify-write never recreate a key deleted meanwhile.
	PutExisting(ctx context.Context, entries []Entry) ([]bool, error)
	// Swap replaces the value and TTL of e.Key with e's, only if the key
	// holds exactly old, and reports whether it did: compare-and-set. An
	// absent key is never created.
	Swap(ctx context.Context, old []byte, e Entry) (bool, error)
	// Write applies a batch of writes, in one round trip per node where
	// it can. Set additions are sent before the entries; a batch is not
	// atomic, so after an error any part of it may have been applied.
	Write(ctx context.Context, w Write) error
	// Get returns the value of each key, nil where a key is absent.
	Get(ctx context.Context, keys []string) ([][]byte, error)
	// Delete removes the keys and reports how many existed.
	Delete(ctx context.Context, keys []string) (int, error)
	// AddToSet adds members to the set at key. A positive ttl extends the
	// set's lifetime to at least ttl; zero makes it permanent.
	AddToSet(ctx context.Context, key string, members []string, ttl time.Duration) error
	// SetMembers returns the members of the set at key, none if absent.
	SetMembers(ctx context.Context, key string) ([]string, error)
	// Scan calls fn with batches of the keys, plain and set, that start
	// with prefix, until every key has been seen or fn fails (Scan then
	// returns fn's error). prefix is literal: glob characters in it match
	// only themselves. A key present for the whole scan is seen at least
	// once and may be seen twice; one created or deleted meanwhile may or
	// may not be. Deleting keys from fn is allowed.
	Scan(ctx context.Context, prefix string, fn func(keys []string) error) error
}

// KeyManager holds key-encryption keys (KEKs). A KEK never leaves it. The
// tokenizer makes its keys itself, from its own randomness, and has the
// KeyManager wrap them; it keeps them in the clear only in memory.
//
// KEKs are named by the tokenizer (see GenerationKEK): "" is the main KEK,
// which always exists; any other name is the KEK of one tenant generation,
// created by its first Wrap and destroyed by DestroyKEK.
//
// Every wrap is bound to associated data ad, which Unwrap must be given
// again: a wrapped key opens only under the KEK and the ad it was wrapped
// with. Unwrap's errors say why a key does not open:
//   - ErrKeyDestroyed: the KEK, or the KEK version the key was wrapped
//     under, has been destroyed or retired, for good;
//   - ErrKeyMismatch: wrapped does not open under kek with ad: it was
//     wrapped under another KEK or with other associated data, or edited;
//   - anything else: the key manager could not be reached or refused the
//     work, and a retry may succeed.
type KeyManager interface {
	// Wrap encrypts key under the newest version of the KEK named kek,
	// bound to ad, creating that KEK if it is a generation's and does not
	// exist yet. Racing first wraps create one KEK.
	Wrap(ctx context.Context, kek string, key, ad []byte) (wrapped []byte, err error)
	// Unwrap returns the key inside wrapped, which kek wraps, bound to ad.
	// A nil ad opens a key wrapped with none.
	Unwrap(ctx context.Context, kek string, wrapped, ad []byte) ([]byte, error)
	// DestroyKEK destroys the KEK named kek, every version of it, for good:
	// nothing it wrapped can be unwrapped again. Destroying a KEK that does
	// not exist succeeds. It refuses the main KEK "".
	DestroyKEK(ctx context.Context, kek string) error
	// KEKs lists the generation KEKs that exist and whose names start with
	// prefix, so that a purge destroys every one of a tenant's, whatever
	// the store says. Never the main KEK.
	KEKs(ctx context.Context, prefix string) ([]string, error)
}
