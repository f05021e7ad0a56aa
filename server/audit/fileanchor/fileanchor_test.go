package fileanchor_test

import (
	"testing"

	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/audit/anchortest"
	"github.com/jeton-dev/jeton/server/audit/fileanchor"
)

func TestConformance(t *testing.T) {
	anchortest.Run(t, func(t *testing.T, replica string) audit.Anchor {
		a, err := fileanchor.New(t.TempDir(), replica, nil)
		if err != nil {
			t.Fatal(err)
		}
		return a
	})
}
