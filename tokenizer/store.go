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
