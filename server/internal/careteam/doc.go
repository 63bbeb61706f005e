// Package careteam is the domain: its types, the referral state machine, the
// session gate, the access policy and the use cases that apply them inside
// one database transaction each. It knows nothing of gRPC or SQL; the store
// it is given implements Store.
package careteam
