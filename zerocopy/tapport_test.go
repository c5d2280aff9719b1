package zerocopy

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTapPortInterrupt(t *testing.T) {
	p, err := OpenTap("zctest0")
	if err != nil {
		t.Skipf("no tap here: %v", err)
	}
	defer p.Close()
	require.NoError(t, p.SetHdrLen(12))
	p.Interrupt()
	_, err = p.ReadFrame(make([]byte, 12), [][]byte{make([]byte, 2048)})
	require.ErrorIs(t, err, ErrInterrupted)
}
