package memstore_test

import (
	"testing"

	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
	"github.com/jeton-dev/jeton/tokenizer/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(testing.TB) tokenizer.Store { return memstore.New() })
}
