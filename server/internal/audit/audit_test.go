package audit

import (
	"strings"
	"testing"
)

// A record is written whatever bytes a caller sent in what it keeps.
func TestCallerTextIsStorable(t *testing.T) {
	e := NewEntry(Record{})
	e.Identify("cn-\xff\x00x", [16]byte{}, "PHYSICIAN", [16]byte{})
	e.SetPurpose("EMERGENCY", "bad\xfe\x00bytes")
	r, ok := e.Take("INVALID_ARGUMENT")
	if !ok {
		t.Fatal("not taken")
	}
	if r.Subject != "cn-\uFFFDx" || r.EmergencyReason != "bad\uFFFDbytes" {
		t.Fatalf("subject %q, reason %q", r.Subject, r.EmergencyReason)
	}
}

// Records from before Suppressed existed hash as they did.
func TestCanonicalOmitsZeroSuppressed(t *testing.T) {
	r := Record{Subject: "s"}
	before := string(r.Canonical())
	if strings.Contains(before, "suppressed") {
		t.Fatalf("a record without suppressed calls names them: %s", before)
	}
	r.Suppressed = 3
	if after := string(r.Canonical()); after == before {
		t.Fatal("suppressed calls are not covered by the hash")
	}
	r.Suppressed = 0
	if got := string(r.Canonical()); got != before {
		t.Fatalf("canonical form changed: %s", got)
	}
}
