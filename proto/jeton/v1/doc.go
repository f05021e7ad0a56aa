// Package jetonv1 holds jeton's gRPC API, generated from the .proto files
// beside it by `make generate`. Do not edit the *.pb.go files by hand.
package jetonv1
