package afxdp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeNIC lays out what sysfs shows for ifname: a device bound to driver
// with the virtio feature bits set (features "" leaves the file out).
func fakeNIC(t *testing.T, root, ifname, driver string, bits ...int) {
	t.Helper()
	dev := filepath.Join(root, "devices", ifname)
	require.NoError(t, os.MkdirAll(dev, 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "bus", driver), 0o755))
	require.NoError(t, os.Symlink(filepath.Join(root, "bus", driver), filepath.Join(dev, "driver")))
	if driver == "virtio_net" {
		f := []byte(strings.Repeat("0", 64))
		for _, b := range bits {
			for len(f) <= b {
				f = append(f, '0')
			}
			f[b] = '1'
		}
		require.NoError(t, os.WriteFile(filepath.Join(dev, "features"), append(f, '\n'), 0o644))
	}
	nd := filepath.Join(root, "class", "net", ifname)
	require.NoError(t, os.MkdirAll(nd, 0o755))
	require.NoError(t, os.Symlink(dev, filepath.Join(nd, "device")))
}

// The bytes a zero-copy NIC writes in front of each frame, per driver:
// virtio_net's header by its negotiated features, nothing for the
// descriptor-based NICs, and "too many" for a header it cannot size.
func TestDriverHeader(t *testing.T) {
	root := t.TempDir()
	fakeNIC(t, root, "v1", "virtio_net", virtioFVersion1, virtioNetFMrgRxbuf)
	fakeNIC(t, root, "v2", "virtio_net", virtioFVersion1, virtioNetFHashReport)
	fakeNIC(t, root, "v3", "virtio_net")
	fakeNIC(t, root, "v4", "virtio_net", virtioFVersion1, 66)
	fakeNIC(t, root, "i1", "ixgbe")
	for _, c := range []struct {
		ifname string
		want   uint32
	}{{"v1", 12}, {"v2", 20}, {"v3", 10}, {"v4", ^uint32(0)}, {"i1", 0}, {"veth0", 0}} {
		got, _, err := driverHeader(root, c.ifname)
		require.NoError(t, err, c.ifname)
		require.Equal(t, c.want, got, c.ifname)
	}
}
