package main

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// retryAfter returns the delay the server asked for in a refusal's
// google.rpc.RetryInfo. It has client.RetryAfter's signature and meaning;
// it reads the same detail until that function lands in the client.
func retryAfter(err error) (time.Duration, bool) {
	if err == nil {
		return 0, false
	}
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return max(ri.GetRetryDelay().AsDuration(), 0), true
		}
	}
	return 0, false
}
