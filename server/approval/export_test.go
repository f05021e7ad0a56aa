package approval

import (
	"context"
	"encoding/base64"

	"github.com/jeton-dev/jeton/tokenizer"
)

// AsLegacy rewrites request id's stored entry in the format of earlier
// releases (readable JSON with an HMAC), as a request pending across an
// upgrade would be stored.
func AsLegacy(ctx context.Context, b *Book, id string) error {
	vals, err := b.store.Get(ctx, []string{requestName(id)})
	if err != nil {
		return err
	}
	payload, err := b.open("request", id, vals[0])
	if err != nil {
		return err
	}
	enc := base64.RawURLEncoding
	legacy := enc.EncodeToString(payload) + "." + enc.EncodeToString(b.legacyMAC("request", id, payload))
	return b.store.Put(ctx, []tokenizer.Entry{{Key: requestName(id), Value: []byte(legacy)}})
}
