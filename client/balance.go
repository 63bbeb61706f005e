package client

import (
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// DialAll connects to several careteamd replicas (each "host:port") as one
// Client whose calls are spread over them round robin, so that replicas on
// one database share the load and a replica that goes away is skipped.
// With one address it is Dial.
//
// The addresses are fixed: a deployment whose replicas come and go puts
// them behind a DNS name that resolves to all of them and uses Dial.
func DialAll(addrs []string, opts ...Option) (*Client, error) {
	switch len(addrs) {
	case 0:
		return nil, errors.New("client: DialAll needs at least one address")
	case 1:
		return Dial(addrs[0], opts...)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	// Dial checks its target; the others are checked here, so plaintext
	// never goes to a replica off this machine either.
	if o.plaintext {
		for _, a := range addrs {
			if !loopback(a) {
				return nil, fmt.Errorf("%w, not %q", ErrPlaintextNotLoopback, a)
			}
		}
	}
	endpoints := make([]resolver.Endpoint, len(addrs))
	for i, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("client: address %q: %w", a, err)
		}
		// Each replica's certificate is checked against its own host name
		// rather than the first address's.
		endpoints[i] = resolver.Endpoint{Addresses: []resolver.Address{{Addr: a, ServerName: host}}}
	}
	// A resolver local to this connection answers for the "dns" scheme that
	// a plain "host:port" target uses, so Dial keeps building the
	// connection (credentials, retry policy, round_robin from its service
	// config) while the addresses come from the list instead of DNS.
	r := manual.NewBuilderWithScheme("dns")
	r.InitialState(resolver.State{Endpoints: endpoints})
	return Dial(addrs[0], append(opts, WithDialOptions(grpc.WithResolvers(r)))...)
}
