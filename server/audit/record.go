package audit

import "time"

// Record is one audited call on the trusted side. It holds no value and no
// token: tokens appear only as keyed hashes.
type Record struct {
	Time     time.Time `json:"time"`
	Identity string    `json:"identity"`
	Peer     string    `json:"peer"`
	Method   string    `json:"method"`
	Purpose  string    `json:"purpose,omitempty"`
	CaseRef  string    `json:"case_ref,omitempty"`
	Items    []Item    `json:"items,omitempty"`
	// Outcome is "ok" or "failed" for the call as a whole.
	Outcome string `json:"outcome"`
	// Detail is a fixed, value-free note, such as a status code name.
	Detail string `json:"detail,omitempty"`
}

// Item is the outcome for one token of a call.
type Item struct {
	// TokenHash is a keyed hash of the token, so an investigator holding a
	// token can find its reveals, and the log alone reveals no token.
	TokenHash string `json:"token_hash,omitempty"`
	Outcome   string `json:"outcome"`
}

// Item outcomes.
const (
	OutcomeRevealed = "revealed"
	OutcomeMasked   = "masked"
	OutcomeNotFound = "not_found" // unknown, expired, erased or tampered
	OutcomeDenied   = "denied"    // exists or not, the caller may not see it
	OutcomeInvalid  = "invalid"   // malformed token
)
