package careteam

import (
	"fmt"
	"strconv"
)

// Etag returns the etag of a resource at version.
func Etag(version int64) string { return strconv.FormatInt(version, 10) }

// checkEtag compares a caller's etag with the current version; an empty
// etag means the caller does not ask for the check.
func checkEtag(etag string, version int64) error {
	if etag == "" || etag == Etag(version) {
		return nil
	}
	return fmt.Errorf("etag %q, current %q: %w", etag, Etag(version), ErrStaleEtag)
}
