package postgres

import (
	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/careteam"
)

// collect scans every row with scan.
func collect[T any](rows pgx.Rows, scan func(pgx.Row) (*T, error)) ([]*T, error) {
	defer rows.Close()
	var out []*T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// identifierJSON is how identifiers are stored in jsonb columns.
type identifierJSON struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

func identifiersJSON(ids []careteam.Identifier) []identifierJSON {
	out := make([]identifierJSON, len(ids))
	for i, id := range ids {
		out[i] = identifierJSON(id)
	}
	return out
}
