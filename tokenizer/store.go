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

// KeyManager holds key-encryption keys (KEKs). A KEK never leaves it;
// jeton only ever sees data keys, in the clear in memory and wrapped at rest.
//
// KEKs are named by the tokenizer: "" is the main KEK, which always exists
// and wraps root keys; any other name (a-z, 0-9 and '-', starting with a
// letter) is a KEK of its own for one tenant generation, created by
// NewDataKey on first use and destroyed by DestroyKEK. Unwrap and Rewrap
// return an error wrapping ErrKeyDestroyed when the KEK, or the KEK version
// a key was wrapped under, has been destroyed or retired; any other error
// means the key manager could not be reached or refused the work.
type KeyManager interface {
	// NewDataKey returns a fresh 256-bit key and that key wrapped by the
	// KEK named kek, creating that KEK if it does not exist yet.
	NewDataKey(ctx context.Context, kek string) (key, wrapped []byte, err error)
	// Unwrap returns the key inside wrapped, which kek wraps.
	Unwrap(ctx context.Context, kek string, wrapped []byte) ([]byte, error)
	// Rewrap re-wraps under kek's newest version without revealing the key.
	Rewrap(ctx context.Context, kek string, wrapped []byte) ([]byte, error)
	// DestroyKEK destroys the KEK named kek, every version of it, for good:
	// nothing it wrapped can be unwrapped again. Destroying a KEK that does
	// not exist succeeds. It refuses the main KEK "".
	DestroyKEK(ctx context.Context, kek string) error
}
