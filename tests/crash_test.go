package tests

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/govmm/govmm/tests/harness"
)

// crashHost boots a kernel whose protected-mode code is all 0xFF bytes
// (the real bzImage's setup header, so govmm loads it): the first
// instruction is invalid, the guest has no IDT yet, and the CPU
// triple-faults at once.
const crashHost = `k=$WORK/bad-bzImage
sects=$(dd if="$KERNEL" bs=1 skip=497 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
hdr=$(( (sects + 1) * 512 ))
size=$(wc -c <"$KERNEL")
head -c $hdr "$KERNEL" >"$k"
tr '\0' '\377' </dev/zero | head -c $((size - hdr)) >>"$k"
"$GOVMM" run --no-reboot --kernel "$k" --mem 128M
echo "RESULT: vmm-exit $?"
`

// TestGuestTripleFault: a guest that triple-faults ends govmm with one
// error line saying so and exit status 1, and in the nested test host the
// harness prints KVM's last events before the shutdown (L1-TRACE), which
// is what it does for an unexpected triple fault too.
func TestGuestTripleFault(t *testing.T) {
	env := harness.Setup(t)
	r := env.Run(t, harness.Scenario{Name: "triple-fault", HostScript: crashHost, ExpectCrash: true, Timeout: 2 * time.Minute})[0]
	assert.False(t, r.TimedOut)
	assert.Equal(t, "1", r.Values["vmm-exit"], "a guest failure is exit status 1")
	assert.Contains(t, r.Output, "govmm: guest failed: vCPU 0: "+harness.GuestCrashMarker)
	if env.Mode == harness.Nested {
		assert.Contains(t, r.Output, "L1-TRACE: a guest shut down (triple fault)", "KVM's trace of the test host")
		assert.Regexp(t, `L1-TRACE: .*kvm_exit: .*reason`, r.Output)
	}
}
