package postgres_test

import (
	"os"
	"testing"

	"github.com/careteam/careteam/server/internal/testdb"
)

// The tests are an external package because testdb imports this one: an
// internal test importing testdb would be an import cycle.
func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }
