package layers

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// pkg is the part of `go list -json` the rule needs.
type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Deps         []string
}

// list runs `go list -json` with args over the module.
func list(t *testing.T, args ...string) []pkg {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	cmd := exec.Command(goBin, append([]string{"list", "-json"}, args...)...)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
	}
	require.NoError(t, err)
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else {
			require.NoError(t, err)
		}
		pkgs = append(pkgs, p)
	}
	require.NotEmpty(t, pkgs)
	return pkgs
}

// upward returns the imports of p (its tests' too) that break the rule.
func upward(p pkg) []string {
	from, ok := Of(p.ImportPath)
	if !ok {
		return []string{"(no layer for " + p.ImportPath + ")"}
	}
	var bad []string
	for _, imp := range append(append(append([]string{}, p.Imports...), p.TestImports...), p.XTestImports...) {
		to, ok := Of(imp)
		if !ok || imp == p.ImportPath {
			continue // outside the module, or an external test of p
		}
		switch {
		case from == Helper && to != Helper:
			bad = append(bad, imp+" (a helper imports a layer)")
		case from != Helper && to > from:
			bad = append(bad, imp+" ("+Names[from]+" imports "+Names[to]+")")
		}
	}
	return bad
}

// TestEveryArrowPointsDown checks each package's imports, its tests'
// included, against the layers.
func TestEveryArrowPointsDown(t *testing.T) {
	pkgs := list(t, Module+"/...")
	seen := map[int]bool{}
	for _, p := range pkgs {
		if l, ok := Of(p.ImportPath); ok {
			seen[l] = true
		}
		if bad := upward(p); len(bad) > 0 {
			t.Errorf("%s imports upward: %s", p.ImportPath, strings.Join(bad, ", "))
		}
	}
	for l, name := range Names {
		require.True(t, seen[l], "no package in layer %s: the layer map is out of date", name)
	}
}

// TestPlatformBuildsAlone checks the whole dependency closure of the
// platform: nothing of the devices, zerocopy, the machine or the commands
// is in it, directly or through a third package.
func TestPlatformBuildsAlone(t *testing.T) {
	for _, p := range list(t, "-deps", Module+"/vmm/...") {
		l, ok := Of(p.ImportPath)
		if !ok {
			continue
		}
		require.True(t, l == 0 || l == Helper, "the platform depends on %s (layer %s)", p.ImportPath, Names[max(l, 0)])
	}
}

// TestRuleCatchesUpwardImports makes sure the check can fail: a platform
// package importing a device model, and a helper importing the platform.
func TestRuleCatchesUpwardImports(t *testing.T) {
	require.NotEmpty(t, upward(pkg{ImportPath: Module + "/vmm/pci", Imports: []string{Module + "/devices/virtionet"}}))
	require.NotEmpty(t, upward(pkg{ImportPath: Module + "/devices/virtionet", TestImports: []string{Module + "/machine"}}))
	require.NotEmpty(t, upward(pkg{ImportPath: Module + "/internal/testnet", Imports: []string{Module + "/vmm"}}))
	require.Empty(t, upward(pkg{ImportPath: Module + "/machine", Imports: []string{Module + "/vmm", Module + "/zerocopy", "fmt"}}))
	require.NotEmpty(t, upward(pkg{ImportPath: Module + "/newtop/x"}), "a package outside the map must be noticed")
}
