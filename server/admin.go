package server

import (
	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
)

// adminService serves Admin on the trusted listener, to custodians only.
type adminService struct {
	jetonv1.UnimplementedAdminServer
	s *Server
}
