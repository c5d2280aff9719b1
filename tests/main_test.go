package tests

import (
	"fmt"
	"os"
	"testing"

	"github.com/govmm/govmm/tests/harness"
)

// TestMain prints, after every end-to-end test, how many scenarios needed a
// retry and why, so a green run says what it leaned on.
func TestMain(m *testing.M) {
	code := m.Run()
	fmt.Println("harness: " + harness.Retries.Summary())
	os.Exit(code)
}
