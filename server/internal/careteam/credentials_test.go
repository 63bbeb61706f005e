package careteam

import (
	"strconv"
	"testing"
)

func TestValidNPI(t *testing.T) {
	for v, want := range map[string]bool{
		"1234567893":  true, // the example the NPI standard gives
		"1902837461":  true,
		"1234567890":  false, // wrong check digit
		"1234567839":  false, // two digits swapped
		"123456789":   false,
		"12345678933": false,
		"123456789a":  false,
		"+234567893":  false,
		"":            false,
	} {
		if got := validNPI(v); got != want {
			t.Errorf("validNPI(%q) = %v, want %v", v, got, want)
		}
	}
	// Of the ten numbers sharing nine leading digits, exactly one is valid.
	for _, prefix := range []string{"123456789", "190283746", "000000000", "999999999"} {
		n := 0
		for d := range 10 {
			if validNPI(prefix + strconv.Itoa(d)) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d valid check digits after %s, want 1", n, prefix)
		}
	}
}
