package api

// Undecodable counts the decoding failures kept for validation, which a
// call takes as soon as it starts, whatever becomes of it.
func Undecodable() int {
	n := 0
	undecodable.Range(func(any, any) bool { n++; return true })
	return n
}
