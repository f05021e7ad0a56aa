package main

import (
	"context"
	"errors"
	"io"
)

// wireConfig builds jetond from a production configuration file.
func wireConfig(ctx context.Context, path string, getenv func(string) string, stderr io.Writer) (*app, error) {
	return nil, errors.New("production wiring not built yet")
}
