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
	// Get returns the value of each key, nil where a key is absent.
	Get(ctx context.Context, keys []string) ([][]byte, error)
	// Delete removes the keys and reports how many existed.
	Delete(ctx context.Context, keys []string) (int, error)
	// AddToSet adds members to the set at key. A positive ttl extends the
	// set's lifetime to at least ttl; zero makes it permanent.
	AddToSet(ctx context.Context, key string, members []string, ttl time.Duration) error
	// SetMembers returns the members of the set at key, none if absent.
	SetMembers(ctx context.Context, key string) ([]string, error)
}

// KeyManager holds the key-encryption key (KEK). The KEK never leaves it;
// jeton only ever sees data keys, in the clear in memory and wrapped at rest.
// Unwrap and Rewrap return an error wrapping ErrKeyDestroyed when the KEK
// version a key was wrapped under has been retired or destroyed; any other
// error means the key manager could not be reached or refused the work.
type KeyManager interface {
	// NewDataKey returns a fresh 256-bit key and that key wrapped by the KEK.
	NewDataKey(ctx context.Context) (key, wrapped []byte, err error)
	// Unwrap returns the key inside wrapped.
	Unwrap(ctx context.Context, wrapped []byte) ([]byte, error)
	// Rewrap re-wraps under the newest KEK version without revealing the key.
	Rewrap(ctx context.Context, wrapped []byte) ([]byte, error)
}
