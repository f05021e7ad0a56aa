package tokenizer

import "errors"

// Sentinel errors that callers branch on. Their messages never carry a
// personal value, a token or a key.
var (
	// ErrUnavailable means a backend (store or key manager) could not serve
	// the call. The caller should fail closed and may retry later.
	ErrUnavailable = errors.New("tokenizer: backend unavailable")
	// ErrNotFound means no readable record exists for a token: it was never
	// issued, it expired, it was erased, its key generation was destroyed, or
	// its record failed authentication. Callers must not tell these apart.
	ErrNotFound = errors.New("tokenizer: token not found")
	// ErrInvalidToken means a string is not a well-formed token. It is decided
	// without touching storage.
	ErrInvalidToken = errors.New("tokenizer: malformed token")
	// ErrInvalidValue means a value is empty, too long, not UTF-8 or not of
	// its class's shape after normalisation.
	ErrInvalidValue = errors.New("tokenizer: invalid value")
	// ErrUnknownClass means a field class is not configured.
	ErrUnknownClass = errors.New("tokenizer: unknown field class")
	// ErrKeyDestroyed means the key generation a record was sealed under has
	// been destroyed. Reveal paths report it as ErrNotFound.
	ErrKeyDestroyed = errors.New("tokenizer: key generation destroyed")
	// ErrDevOnly is returned by dev-only adapters used outside dev mode.
	ErrDevOnly = errors.New("tokenizer: dev-only component used outside dev mode")
)

// UserError marks an error caused by the caller's input, as opposed to a
// failure of the service. Its message is safe to show the caller: it never
// includes the input itself.
type UserError struct{ Err error }

func (e *UserError) Error() string { return e.Err.Error() }
func (e *UserError) Unwrap() error { return e.Err }

// IsUserError reports whether err was caused by the caller's input.
func IsUserError(err error) bool {
	var u *UserError
	return errors.As(err, &u)
}

// ErrKeyMismatch means a stored wrapped key does not open under the
// identity jeton computes for it (its tenant, generation and purpose): it
// was copied from another tenant, generation or purpose, or edited. The
// keyring reports it wrapped in ErrUnavailable, so callers fail closed
// and never mistake it for a missing token.
var ErrKeyMismatch = errors.New("tokenizer: stored wrapped key does not open under its identity (moved or edited)")
