package harness

import (
	"strings"
	"testing"
)

// The nested test host's scenarios run govmm with Env.GovmmEnv exported
// (its vCPU pinning), and Defaults leaves it out for measurements.
func TestScenarioScriptExportsGovmmEnv(t *testing.T) {
	e := &Env{GovmmEnv: []string{"GOVMM_CPU_PIN=auto", "GOVMM_CPU_PIN_SCOPE=all"}}
	s := Scenario{Name: "x", HostScript: "echo hi\n"}
	got := e.scenarioScript(s)
	if !strings.HasPrefix(got, "export GOVMM_CPU_PIN=auto GOVMM_CPU_PIN_SCOPE=all\n") || !strings.HasSuffix(got, "echo hi\n") {
		t.Fatalf("script %q", got)
	}
	if got := e.Defaults().scenarioScript(s); got != s.HostScript {
		t.Fatalf("Defaults: script %q", got)
	}
}
